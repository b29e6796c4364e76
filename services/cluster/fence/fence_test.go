package fence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/netnstest"
	"tandem/internal/testenv"
	"tandem/services/cluster/fence/ipmisim"
)

// bmc runs Debian's ipmi_sim on loopback with one admin user; chassis
// power is a file its chassis_control program reads and writes.
type bmc struct {
	port  int
	power string
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startBMC starts a BMC whose chassis is powered as power says ("1" on,
// "0" off); a BMC that is stuck ignores every power command.
func startBMC(t *testing.T, power string, stuck bool) *bmc {
	testenv.RequireTool(t, "ipmi_sim")
	dir := t.TempDir()
	b := &bmc{port: freeUDPPort(t), power: filepath.Join(dir, "power")}
	testenv.WriteFile(t, b.power, []byte(power), 0o644)
	ctl := filepath.Join(dir, "chassis")
	set := "/dev/null"
	if !stuck {
		set = b.power
	}
	script := fmt.Sprintf(`#!/bin/sh
# ipmi_sim chassis_control: "get power" or "set power VALUE"
case "$2 $3" in
"get power"|"get power ") echo "power:$(cat %[1]s)" ;;
*) [ "$2" = set ] && [ "$3" = power ] && echo "$4" | tr -d '"' > %[2]s ;;
esac
`, b.power, set)
	testenv.WriteFile(t, ctl, []byte(script), 0o755)
	args, err := ipmisim.Write(dir, ipmisim.BMC{Name: "tandemfence", Port: b.port, Chassis: ctl, User: "fence", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	// A netnstest.Net only to have the process killed (by PID) at cleanup;
	// ipmi_sim listens on the host's loopback, nothing else.
	n := netnstest.New(t)
	sim := execCmd(args[0], args[1:]...)
	sim.Dir = dir
	n.Start(sim)
	return b
}

func (b *bmc) agent(password string) *IPMI {
	return &IPMI{Host: "127.0.0.1", Port: b.port, User: "fence", Password: password, Confirm: 5 * time.Second}
}

// ready waits until the BMC answers and returns its power state.
func (b *bmc) ready(t *testing.T) bool {
	t.Helper()
	var on bool
	var err error
	for i := 0; i < 50; i++ { // ipmi_sim needs a moment to listen
		if on, err = b.agent("s3cret").PowerStatus(context.Background()); err == nil {
			return on
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the BMC never answered: %v", err)
	return false
}

func TestIPMIPowerOff(t *testing.T) {
	b := startBMC(t, "1", false)
	a := b.agent("s3cret")
	ctx := context.Background()
	if !b.ready(t) {
		t.Fatal("PowerStatus before fencing = off, want on")
	}
	if err := (Agents{"b": a}).Fence(ctx, "b"); err != nil {
		t.Fatalf("Fence(b) = %v", err)
	}
	if p, _ := os.ReadFile(b.power); strings.TrimSpace(string(p)) != "0" {
		t.Errorf("chassis power after Fence = %q, want 0", p)
	}
	if on, err := a.PowerStatus(ctx); err != nil || on {
		t.Errorf("PowerStatus after Fence = %v, %v; want off", on, err)
	}
}

func TestIPMIWrongPassword(t *testing.T) {
	b := startBMC(t, "1", false)
	b.ready(t)
	err := b.agent("wrong").Fence(context.Background(), "b")
	if err == nil || !strings.Contains(err.Error(), "fence b: ipmi 127.0.0.1:") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Fence with a wrong password = %v, want an error naming the node and the BMC, not the password", err)
	}
	t.Logf("wrong password: %v", err)
	if p, _ := os.ReadFile(b.power); strings.TrimSpace(string(p)) != "1" {
		t.Errorf("chassis power after a refused Fence = %q, want still 1", p)
	}
}

// A chassis that is off already is fenced; one that stays on after the
// power-off is not (ErrNotConfirmed); a BMC that does not answer is an
// error naming it.
func TestIPMIFaults(t *testing.T) {
	off := startBMC(t, "0", false)
	if off.ready(t) {
		t.Fatal("PowerStatus = on, want off")
	}
	if err := off.agent("s3cret").Fence(context.Background(), "b"); err != nil {
		t.Errorf("Fence of a node that is off = %v, want success", err)
	}
	stuck := startBMC(t, "1", true)
	stuck.ready(t)
	a := stuck.agent("s3cret")
	a.Confirm = time.Second
	if err := a.Fence(context.Background(), "b"); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("Fence through a BMC that stays on = %v, want ErrNotConfirmed", err)
	}
	gone := &IPMI{Host: "127.0.0.1", Port: freeUDPPort(t), User: "fence", Password: "s3cret"}
	if err := gone.Fence(context.Background(), "b"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", gone.Port)) {
		t.Errorf("Fence through no BMC = %v, want an error naming it", err)
	}
}

func TestNoAgent(t *testing.T) {
	if err := (Agents{}).Fence(context.Background(), "x"); !errors.Is(err, ErrNoAgent) {
		t.Errorf("Fence without an agent = %v, want ErrNoAgent", err)
	}
}

func execCmd(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
