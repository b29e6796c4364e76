package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/services/cluster/fence/ipmisim"
)

// TestFencing gives each data node an IPMI BMC for its peer (Debian's
// ipmi_sim in the fencing node's namespace; "power off" kills the
// target's daemon by PID and takes its VIP away, as a real power-off
// would). Both devices are checked (status, tandemctl fence test) without
// fencing. When the owner dies, the peer fences it, and only after the
// BMC confirms power off takes over without waiting for the lease.
func TestFencing(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ipmi_sim")
	l := newLab(t)
	l.extra = map[string]string{}
	for _, pair := range [][2]string{{"a", "b"}, {"b", "a"}} {
		fencer, target := pair[0], pair[1]
		port := l.startBMC(fencer, target)
		pw := filepath.Join(l.nodes[fencer].dir, "bmc-"+target+".pass")
		testenv.WriteFile(t, pw, []byte("s3cret\n"), 0o600)
		l.extra[fencer] = fmt.Sprintf("fencing:\n  %s: {agent: ipmi, address: 127.0.0.1, port: %d, user: fence, password_file: %s}\n", target, port, pw)
		l.writeConfig(l.nodes[fencer])
	}
	l.observe()
	defer func() {
		if t.Failed() {
			for _, n := range []string{"a", "b"} {
				t.Logf("--- %s daemon log (tail) ---\n%s", n, tail(l.logOf(n), 4000))
			}
		}
	}()
	l.bootstrap(t)
	owner := l.settle(30 * time.Second)
	peer := other(owner)

	// The devices are checked without fencing: on the status screen,
	// and on demand with tandemctl fence test.
	l.waitFor(30*time.Second, "status to show both fence devices answering", func() bool {
		out, _ := l.run("c", "status")
		return strings.Contains(out, "Fence device of a (on b): answers, power on") && strings.Contains(out, "Fence device of b (on a): answers, power on")
	})
	if out := l.mustCtl("c", "fence", "test", owner); !strings.Contains(out, fmt.Sprintf("fence device of %s (on %s) answers: power on", owner, peer)) {
		t.Errorf("fence test %s = %q", owner, out)
	}
	if out, err := l.run("c", "fence", "test", "c"); err == nil || !strings.Contains(out, "not a data node") {
		t.Errorf("fence test of the arbitrator = %v, %q; want refused", err, out)
	}
	for _, n := range []string{"a", "b"} {
		if p, _ := os.ReadFile(filepath.Join(l.nodes[other(n)].dir, "bmc-"+n, "power")); strings.TrimSpace(string(p)) != "1" {
			t.Fatalf("%s's BMC power after the checks = %q, want 1 (a check never fences)", n, p)
		}
	}

	began := time.Now()
	t.Logf("killing %s at %s", owner, began.Format("15:04:05.000"))
	l.kill(owner, syscall.SIGKILL) // the VIP stays until the BMC powers the node off
	l.waitFor(20*time.Second, peer+" to take over after fencing "+owner, func() bool { return l.obs.owner() == peer })
	t.Logf("takeover with fencing took %v", time.Since(began).Round(10*time.Millisecond))
	log := l.logOf(peer)
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "fenc") || strings.Contains(line, "acquired") || strings.Contains(line, "leadership") {
			t.Log(line)
		}
	}
	if !strings.Contains(log, "fenced: power off confirmed") {
		t.Errorf("%s took over without a confirmed power off of %s", peer, owner)
	}
	if p, _ := os.ReadFile(filepath.Join(l.nodes[peer].dir, "bmc-"+owner, "power")); strings.TrimSpace(string(p)) != "0" {
		t.Errorf("%s's BMC power = %q, want 0", owner, p)
	}
	l.noDoubles(t)
}

// startBMC runs ipmi_sim for target in fencer's namespace and returns its
// UDP port on that namespace's loopback.
func (l *lab) startBMC(fencer, target string) int {
	dir := filepath.Join(l.nodes[fencer].dir, "bmc-"+target)
	power := filepath.Join(dir, "power")
	testenv.WriteFile(l.t, power, []byte("1\n"), 0o644)
	tn := l.nodes[target]
	script := fmt.Sprintf(`#!/bin/sh
# ipmi_sim chassis_control for %[1]s: "get power" or "set power VALUE".
if [ "$2" = get ]; then echo "power:$(cat %[2]s)"; exit 0; fi
if [ "$2" = set ] && [ "$3" = power ]; then
	v=$(echo "$4" | tr -d '"')
	echo "$v" > %[2]s
	if [ "$v" = 0 ]; then
		kill -9 "$(cat %[3]s)" 2>/dev/null
		ip netns exec %[4]s ip addr del %[5]s/24 dev lan0 2>/dev/null
	fi
fi
exit 0
`, target, power, filepath.Join(tn.dir, "daemon.pid"), tn.ns, vipAddr)
	ctl := filepath.Join(dir, "chassis")
	testenv.WriteFile(l.t, ctl, []byte(script), 0o755)
	port := 19600 + int(target[0]-'a')
	args, err := ipmisim.Write(dir, ipmisim.BMC{Name: "bmc" + target, Port: port, Chassis: ctl, User: "fence", Password: "s3cret"})
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := l.net.Cmd(context.Background(), l.nodes[fencer].ns, args[0], args[1:]...)
	cmd.Dir = dir
	l.net.Start(cmd)
	return port
}
