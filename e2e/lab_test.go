package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"tandem/image/disk"
	"tandem/internal/nodeimage"
	"tandem/internal/testenv"
	"tandem/lab"
)

// TestLab boots the three-VM lab from the kvm-node and kvm-arbitrator
// builds, the arbiter with a seeded node.yaml (its own host name, the
// lab's SNTP server): every node reaches ready with its fixed lab address
// from the switch's DHCP, the arbiter runs with its seed and queries the
// SNTP server, which also answers chrony from the host's side; a Go
// connection made with Dial reaches a node's DNS server; every node
// answers ping from the lab's namespace, a partition cuts exactly the
// links it names, heal restores them, a killed VM is gone, boots again
// from its disk (perm kept, no seed) to ready, and powers off cleanly on
// Shutdown.
func TestLab(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "ping", "chronyd")
	build(t, "kvm-node")
	build(t, "kvm-arbitrator")
	dir := t.TempDir()
	nodes := slices.Clone(lab.Nodes)
	nodes[2].Seed = map[string][]byte{"node.yaml": seededConfig(t, "kvm-arbitrator", "lab-arbiter", lab.HostAddr.String())}
	l, err := lab.Start(context.Background(), lab.Options{Dir: dir, Images: images(), Nodes: nodes, Logf: t.Logf})
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
	arbVM, _ := l.VM(arb.Name)
	if count(arbVM, "hostname kvm-arbitrator -> lab-arbiter") != 1 {
		t.Error("arbiter: the seeded node.yaml's host name was not applied")
	}
	waitNTPRequest(ctx, t, l, arb.Addr.String())
	checkChrony(t, l)
	checkDial(ctx, t, l, a.Addr.String())
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

	// Boot again from its disk: the seed was moved on the first boot, the
	// config it became is still on perm.
	if b, err := disk.ReadBootFile(st.Nodes[2].Disk, nodeimage.SeedDir+"/node.yaml"); err == nil {
		t.Errorf("arbiter's boot partition still holds the seed: %q", b)
	}
	start := time.Now()
	if err := l.Boot(arb.Name); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), bootLimit)
	defer cancel2()
	if err := l.WaitReady(ctx2, arb.Name); err != nil {
		logTails(t, dir)
		t.Fatal(err)
	}
	t.Logf("arbiter booted again to ready in %s", time.Since(start).Round(100*time.Millisecond))
	arbVM, _ = l.VM(arb.Name)
	lease := "addr=" + arb.Addr.String() + "/24"
	if count(arbVM, "msg=lease component=network") == 0 || count(arbVM, lease) == 0 {
		t.Errorf("arbiter's second boot has no lease line for %s", arb.Addr)
	}
	if count(arbVM, "init: no seed files") != 1 || count(arbVM, "hostname kvm-arbitrator -> lab-arbiter") != 1 {
		t.Error("arbiter's second boot: want no seed files and the seeded host name, from perm")
	}
	if n := l.Status().Nodes[2]; !n.Up || n.Boots != 2 || n.PID != arbVM.PID() {
		t.Errorf("after Boot: Status says %+v, want up, 2 boots, pid %d", n, arbVM.PID())
	}
	checkReach(t, l, map[string]bool{arb.Name: true})

	// A reset (here the reset button; the watchdog's and the guest's own
	// end QEMU the same way) boots the node again in a fresh QEMU.
	ctx3, cancel3 := context.WithTimeout(context.Background(), bootLimit)
	defer cancel3()
	if err := arbVM.Monitor("system_reset"); err != nil {
		t.Fatal(err)
	}
	for cur, _ := l.VM(arb.Name); !arbVM.Exited() || cur == arbVM; cur, _ = l.VM(arb.Name) {
		if ctx3.Err() != nil {
			t.Fatalf("arbiter: no fresh QEMU after system_reset (old pid %d, exited %v)", arbVM.PID(), arbVM.Exited())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := l.WaitReady(ctx3, arb.Name); err != nil {
		t.Fatal(err)
	}
	arbVM, _ = l.VM(arb.Name)
	if n := l.Status().Nodes[2]; !n.Up || n.Boots != 3 || n.PID != arbVM.PID() {
		t.Errorf("after a reset: Status says %+v, want up, 3 boots, pid %d", n, arbVM.PID())
	}

	// A clean power-off.
	if err := l.Shutdown(ctx3, arb.Name); err != nil {
		t.Fatal(err)
	}
	if count(arbVM, "tandem: poweroff now") != 1 {
		t.Error("arbiter: Shutdown returned without PID 1's clean power-off")
	}
	if st, err := lab.ReadState(dir); err != nil || st.Nodes[2].Up {
		t.Errorf("lab.json after Shutdown = %+v, %v; want the arbiter down", st, err)
	}
}

// waitNTPRequest waits until the lab's SNTP server has had a request from
// addr.
func waitNTPRequest(ctx context.Context, t *testing.T, l *lab.Lab, addr string) {
	t.Helper()
	for l.Status().NTPRequests[addr] == 0 {
		select {
		case <-ctx.Done():
			t.Errorf("no SNTP request from %s (requests: %v)", addr, l.Status().NTPRequests)
			return
		case <-time.After(time.Second):
		}
	}
}

// checkChrony asks the lab's SNTP server for the time with chronyd -Q
// (measure, never set the clock) from the lab's namespace.
func checkChrony(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := l.HostCommand(ctx, "chronyd", "-Q", "-t", "20", "-f", "/dev/null",
		"server "+lab.HostAddr.String()+" iburst maxsamples 1").CombinedOutput()
	if err != nil || !regexp.MustCompile(`System clock wrong by -?[0-9.]+ seconds`).Match(out) {
		t.Errorf("chronyd -Q against the lab's SNTP server: %v\n%s", err, out)
	}
}

// checkDial sends a DNS query over TCP to addr's tandem-dns from a Go
// connection made with l.Dial, and wants an answer to it (REFUSED: the
// image's config allows only its own network; any answer proves the
// round trip).
func checkDial(ctx context.Context, t *testing.T, l *lab.Lab, addr string) {
	t.Helper()
	c, err := l.Dial(ctx, "tcp", addr+":53")
	if err != nil {
		t.Errorf("Dial: %v", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	dc := &dns.Conn{Conn: c}
	q := new(dns.Msg).SetQuestion("lab.tandem.test.", dns.TypeA)
	if err := dc.WriteMsg(q); err != nil {
		t.Errorf("DNS query to %s over a Dial connection: %v", addr, err)
		return
	}
	r, err := dc.ReadMsg()
	if err != nil || r.Id != q.Id || !r.Response {
		t.Errorf("DNS answer from %s over a Dial connection = %v, %v; want an answer to query %d", addr, r, err, q.Id)
	}
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
func logTails(t testing.TB, dir string) {
	t.Helper()
	keep, err := os.MkdirTemp("", "tandem-e2e-logs-")
	for _, n := range lab.Nodes {
		b, _ := os.ReadFile(filepath.Join(dir, n.Name+".log"))
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("%s.log, last lines:\n%s", n.Name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		if err == nil {
			err = os.WriteFile(filepath.Join(keep, n.Name+".log"), b, 0o644)
		}
	}
	// The test's directory goes with it; the whole logs stay for a
	// post-mortem (every watchdog reset is explained in them).
	if err != nil {
		t.Logf("keep the lab's logs: %v", err)
	} else {
		t.Logf("the lab's whole serial logs are kept in %s", keep)
	}
}
