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

func startBMC(t *testing.T) *bmc {
	testenv.RequireTool(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	b := &bmc{port: freeUDPPort(t), power: filepath.Join(dir, "power")}
	testenv.WriteFile(t, b.power, []byte("1"), 0o644)
	ctl := filepath.Join(dir, "chassis")
	script := fmt.Sprintf(`#!/bin/sh
# ipmi_sim chassis_control: "get power" or "set power VALUE"
case "$2 $3" in
"get power"|"get power ") echo "power:$(cat %[1]s)" ;;
*) [ "$2" = set ] && [ "$3" = power ] && echo "$4" | tr -d '"' > %[1]s ;;
esac
`, b.power)
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

func TestIPMIPowerOff(t *testing.T) {
	b := startBMC(t)
	a := b.agent("s3cret")
	ctx := context.Background()
	var on bool
	var err error
	for i := 0; i < 50; i++ { // ipmi_sim needs a moment to listen
		if on, err = a.PowerStatus(ctx); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || !on {
		t.Fatalf("PowerStatus before fencing = %v, %v; want on", on, err)
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
	b := startBMC(t)
	good := b.agent("s3cret")
	for i := 0; i < 50; i++ {
		if _, err := good.PowerStatus(context.Background()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	err := b.agent("wrong").Fence(context.Background(), "b")
	if err == nil {
		t.Fatalf("Fence with a wrong password = nil, want an error")
	}
	if p, _ := os.ReadFile(b.power); strings.TrimSpace(string(p)) != "1" {
		t.Errorf("chassis power after a refused Fence = %q, want still 1", p)
	}
}

func TestNoAgent(t *testing.T) {
	if err := (Agents{}).Fence(context.Background(), "x"); !errors.Is(err, ErrNoAgent) {
		t.Errorf("Fence without an agent = %v, want ErrNoAgent", err)
	}
}

func execCmd(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
