package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/internal/lab"
	"tandem/internal/testenv"
)

// TestLab boots the three-VM lab from the kvm-node and kvm-arbitrator
// builds: every node reaches ready with its fixed lab address from the
// switch's DHCP, answers ping from the lab's namespace, a partition cuts
// exactly the links it names, heal restores them, and a killed VM is gone.
func TestLab(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "ping")
	build(t, "kvm-node")
	build(t, "kvm-arbitrator")
	dir := t.TempDir()
	l, err := lab.Start(context.Background(), lab.Options{Dir: dir, Images: images(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if _, err := os.Stat("/run/netns/" + l.Netns()); err == nil {
			t.Errorf("namespace %s still there after Stop", l.Netns())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootLimit)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		logTails(t, dir)
		t.Fatal(err)
	}
	for _, n := range lab.Nodes {
		leaseRE := regexp.MustCompile(`(?m)^.*msg=lease component=network .*addr=` + regexp.QuoteMeta(n.Addr.String()) + `/24`)
		b, _ := os.ReadFile(filepath.Join(dir, n.Name+".log"))
		if !leaseRE.Match(b) {
			t.Errorf("%s.log has no lease line for %s", n.Name, n.Addr)
		}
	}
	a, b, arb := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]
	checkReach(t, l, map[string]bool{a.Name: true, b.Name: true, arb.Name: true})

	// data-a alone on one side: the host (with the others) loses it.
	if err := l.Partition(a.Name); err != nil {
		t.Fatal(err)
	}
	checkReach(t, l, map[string]bool{a.Name: false, b.Name: true, arb.Name: true})
	// The host joins data-a's side: now it reaches data-a and not the rest,
	// so the cut is between the sides, not around one node.
	if err := l.Partition(a.Name, lab.HostPort); err != nil {
		t.Fatal(err)
	}
	checkReach(t, l, map[string]bool{a.Name: true, b.Name: false, arb.Name: false})
	if got := l.Status().Partitioned; strings.Join(got, ",") != "data-a,host" {
		t.Errorf("Status().Partitioned = %v, want [data-a host]", got)
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	checkReach(t, l, map[string]bool{a.Name: true, b.Name: true, arb.Name: true})

	vm, _ := l.VM(arb.Name)
	pid := vm.PID()
	if err := l.Kill(arb.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("arbiter's QEMU (pid %d) still exists after Kill", pid)
	}
	for _, n := range l.Status().Nodes {
		if n.Up != (n.Name != arb.Name) {
			t.Errorf("after Kill(%s): Status says %s up=%v", arb.Name, n.Name, n.Up)
		}
	}
	st, err := lab.ReadState(dir)
	if err != nil || len(st.Nodes) != 3 || st.Nodes[2].Up {
		t.Errorf("lab.json after Kill = %+v, %v; want the arbiter down", st, err)
	}
	checkReach(t, l, map[string]bool{a.Name: true, b.Name: true, arb.Name: false})
}

// checkReach pings each node from the lab's namespace and compares with
// want. A reachable node gets a few tries (TCG guests on a loaded machine
// answer late); an unreachable one must miss all of three pings.
func checkReach(t *testing.T, l *lab.Lab, want map[string]bool) {
	t.Helper()
	for _, n := range lab.Nodes {
		w, ok := want[n.Name]
		if !ok {
			continue
		}
		if got := ping(l, n.Addr.String(), w); got != w {
			t.Errorf("ping %s (%s) from the host namespace: reachable=%v, want %v (partition %v)",
				n.Name, n.Addr, got, w, l.Status().Partitioned)
		}
	}
}

func ping(l *lab.Lab, addr string, expect bool) bool {
	tries := 1
	if expect {
		tries = 5
	}
	for range tries {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := l.HostCommand(ctx, "ping", "-n", "-c", "3", "-i", "0.5", "-W", "2", addr).Run()
		cancel()
		if err == nil {
			return true
		}
	}
	return false
}

// logTails logs the end of each node's serial log.
func logTails(t *testing.T, dir string) {
	t.Helper()
	for _, n := range lab.Nodes {
		b, _ := os.ReadFile(filepath.Join(dir, n.Name+".log"))
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("%s.log, last lines:\n%s", n.Name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}
