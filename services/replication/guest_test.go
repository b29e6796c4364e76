package replication

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/golden"
	"tandem/internal/testenv"
	"tandem/lab/vmtest"
)

func TestMain(m *testing.M) {
	if vmtest.IsGuest() {
		guestMain() // a QEMU guest of TestGuestFailover; never returns
	}
	if filepath.Base(os.Args[0]) == guestHandler {
		os.Exit(guestHandlerMain(os.Args[1:])) // drbdadm runs it in a guest
	}
	testenv.LockMachine("services/replication")
	os.Exit(m.Run())
}

// drbdPrograms are drbd-utils' programs the guests need, by their path in
// the package (and in the guest).
var drbdPrograms = []string{"sbin/drbdadm", "sbin/drbdsetup", "sbin/drbdmeta", "lib/drbd/drbdadm-84", "lib/drbd/drbdsetup-84"}

// TestGuestFailover runs the resource for real: two QEMU guests (TCG) with
// Debian's kernel and its DRBD 8.4 module, drbd-utils from Debian, this
// test binary as /init (see guestinit_test.go), a 64 MiB virtio disk each
// and one virtio NIC each, joined by a QEMU socket link on 127.0.0.1. Each
// guest writes the config with this package, finds no metadata, creates
// it and brings the resource up. Guest A forces the initial sync, writes
// 4 MiB of data to /dev/drbd0 and demotes; guest B promotes and reads it
// back. Then A's promotion while B is primary must be refused. The host
// checks the guests' reports: metadata before and after create-md, both
// sides UpToDate, the checksum B read equals the one A wrote, B's status
// after promotion, and A's refused promotion.
func TestGuestFailover(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, vmtest.Tools...)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	p := runPair(ctx, t, [2][]string{})
	if golden.Updating() {
		writeEvents(t, p.reports[0].events, p.reports[1].events)
	}
	checkReports(t, p.reports[0].marks, p.reports[1].marks, p.vms[0].Serial(), p.vms[1].Serial())
}

// guestPair is guests A and B of a run, after both powered off.
type guestPair struct {
	vms     [2]*vmtest.VM
	reports [2]report
}

// runPair boots guests A and B (extra: more QEMU arguments for each),
// joined by their two socket links, and collects their reports until both
// power off; once one reports an error, the other is stopped too (it
// would wait for its peer until its deadline). It fails if they are still
// running when ctx ends.
func runPair(ctx context.Context, t testing.TB, extra [2][]string) guestPair {
	t.Helper()
	run, stop := context.WithCancel(ctx)
	defer stop()
	kernel := vmtest.DebianKernel(t)
	initrd := guestInitramfs(t, kernel)
	dir := t.TempDir()
	ports := [2]int{freePort(t), freePort(t)}
	vmA := vmtest.Start(run, t, vmtest.Config{Kernel: kernel, Initrd: initrd, Args: append(guestArgs(t, dir, "a", "listen", ports), extra[0]...)})
	waitListening(t, ports[0])
	waitListening(t, ports[1])
	vmB := vmtest.Start(run, t, vmtest.Config{Kernel: kernel, Initrd: initrd, Args: append(guestArgs(t, dir, "b", "connect", ports), extra[1]...)})

	p := guestPair{vms: [2]*vmtest.VM{vmA, vmB}}
	var wg sync.WaitGroup
	for i, vm := range p.vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.reports[i] = collect(t, "ab"[i:i+1], vm)
			if _, failed := p.reports[i].marks[markError]; failed {
				stop()
			}
		}()
	}
	wg.Wait()
	vmA.Wait()
	vmB.Wait()
	t.Logf("guests done after %.1fs", time.Since(vmA.Started).Seconds())
	if ctx.Err() != nil {
		t.Fatalf("guests still running after the deadline; A:\n%s\nB:\n%s", vmA.Serial(), vmB.Serial())
	}
	return p
}

// writeEvents saves the events2 output the guests captured as
// testdata/events2-LABEL.txt for TestParseEvents2.
func writeEvents(t *testing.T, all ...map[string][]string) {
	t.Helper()
	for _, events := range all {
		for label, lines := range events {
			p := filepath.Join("testdata", "events2-"+label+".txt")
			if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func checkReports(t *testing.T, a, b map[string]string, serialA, serialB string) {
	t.Helper()
	for name, r := range map[string]map[string]string{"A": a, "B": b} {
		if e, ok := r[markError]; ok {
			t.Fatalf("guest %s failed: %s\nA:\n%s\nB:\n%s", name, e, serialA, serialB)
		}
		if c, ok := r[markAuthRefused]; !ok || c == "connection=Connected" {
			t.Errorf("guest %s with a secret of its own: %q, %v; want the peer refused (Authentication of peer failed) and not connected", name, c, ok)
		}
		if r[markMetaBefore] != "none" || r[markMetaAfter] != "v08" || r[markCreated] != "true" {
			t.Errorf("guest %s: metadata before %q, created %q, after %q; want none, true, v08", name, r[markMetaBefore], r[markCreated], r[markMetaAfter])
		}
	}
	if a[markSynced] == "" {
		t.Errorf("guest A never reported the initial sync done; console:\n%s", serialA)
	}
	if a[markWrote] == "" || a[markWrote] != b[markRead] {
		t.Errorf("guest A wrote sha256 %q, guest B read %q; want the same", a[markWrote], b[markRead])
	}
	if want := "role=Primary disk=UpToDate connection=Connected peer-role=Secondary peer-disk=UpToDate"; b[markPromoted] != want {
		t.Errorf("guest B status after promotion: %q, want %q", b[markPromoted], want)
	}
	if a[markRefused] == "" {
		t.Errorf("guest A: no refused promotion reported while B was primary (A said %v)", a)
	}
	if want := "role=Secondary peer-role=Primary"; a[markStillSecondary] != want {
		t.Errorf("guest A after the refused promotion: %q, want %q", a[markStillSecondary], want)
	}
	checkFence(t, a, b)
}

// checkFence checks the link cut: B (primary) ran the fence-peer handler
// once, which outdated A through the (stand-in) cluster, so DRBD marked
// A Outdated and B's I/O goes on.
func checkFence(t *testing.T, a, b map[string]string) {
	t.Helper()
	if !strings.HasPrefix(a[markCut], "role=Secondary connection=") || strings.Contains(a[markCut], "connection=Connected") {
		t.Errorf("guest A after the cut: %q, want Secondary and not connected", a[markCut])
	}
	if a["down"] != "up=false" {
		t.Errorf("guest A status after down: %q, want up=false", a["down"])
	}
	if want := "role=Primary suspended=no peer-disk=Outdated"; !strings.HasPrefix(b[markFenced], want) {
		t.Errorf("guest B after the cut: %q, want %q", b[markFenced], want)
	}
	if want := "clear data tandem-b; outdate data tandem-a"; b[markHandler] != want {
		t.Errorf("guest B's handler log: %q, want %q (after-resync-target once after the initial sync, then fence-peer once for the peer)", b[markHandler], want)
	}
	if b[markWroteFenced] != "ok" {
		t.Errorf("guest B's write after fencing: %q, want ok (I/O not frozen)", b[markWroteFenced])
	}
	checkHeal(t, a, b)
}

// checkHeal checks the heal and the second cut: A reconnects and resyncs
// from B as the target (its after-resync-target handler clears its
// record), with no split brain; then the cluster has no quorum, so B's
// handler fails, B's I/O stays frozen until resume-io.
func checkHeal(t *testing.T, a, b map[string]string) {
	t.Helper()
	if want := "role=Secondary disk=UpToDate peer-role=Primary"; !strings.HasPrefix(a[markHealed], want) {
		t.Errorf("guest A after the heal: %q, want %q", a[markHealed], want)
	}
	if want := "clear data tandem-a"; a[markHandler] != want {
		t.Errorf("guest A's handler log after the heal: %q, want %q (after-resync-target once, as the resync target)", a[markHandler], want)
	}
	if want := "role=Primary connection=Connected peer-disk=UpToDate"; b[markHealed] != want {
		t.Errorf("guest B after the heal: %q, want %q (no split brain)", b[markHealed], want)
	}
	if !strings.HasPrefix(b[markSuspended], "role=Primary suspended=") {
		t.Errorf("guest B after the second cut: %q, want Primary and suspended", b[markSuspended])
	}
	if b[markFrozen] != "yes" {
		t.Errorf("guest B's write with the handler failing: frozen %q, want yes", b[markFrozen])
	}
	if b[markResumed] != "ok" {
		t.Errorf("guest B's write after resume-io: %q, want ok", b[markResumed])
	}
	if want := "clear data tandem-b; outdate data tandem-a; no-quorum data tandem-a"; b[markHandlerEnd] != want {
		t.Errorf("guest B's handler log at the end: %q, want %q", b[markHandlerEnd], want)
	}
}

// report is what a guest said: the last value of each mark, and the
// events2 lines it captured by label.
type report struct {
	marks  map[string]string
	events map[string][]string
}

// collect reads a guest's console until QEMU exits.
func collect(t testing.TB, name string, vm *vmtest.VM) report {
	r := report{marks: map[string]string{}, events: map[string][]string{}}
	for line := range vm.Lines() {
		i := strings.Index(line, guestMark)
		if i < 0 {
			continue
		}
		mark, val, _ := strings.Cut(line[i+len(guestMark):], " ")
		if mark == markEvents {
			label, l, _ := strings.Cut(val, "|")
			r.events[label] = append(r.events[label], l)
			continue
		}
		r.marks[mark] = val
		t.Logf("%s at %5.1fs: %s %s", name, time.Since(vm.Started).Seconds(), mark, val)
	}
	return r
}

// guestArgs are a guest's disk and NICs: eth0 the replication link (the
// one the guests cut), eth1 their control link, both QEMU socket links on
// 127.0.0.1 (A listens, B connects).
func guestArgs(t testing.TB, dir, name, mode string, ports [2]int) []string {
	t.Helper()
	disk := newDisk(t, filepath.Join(dir, name+".img"))
	mac, mac1 := guestMACA, "52:54:00:98:00:01"
	if name == "b" {
		mac, mac1 = guestMACB, "52:54:00:98:00:02"
	}
	return []string{
		"-drive", "file=" + disk + ",format=raw,if=virtio,cache=unsafe",
		"-netdev", fmt.Sprintf("socket,id=n0,%s=127.0.0.1:%d", mode, ports[0]),
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac,
		"-netdev", fmt.Sprintf("socket,id=n1,%s=127.0.0.1:%d", mode, ports[1]),
		"-device", "virtio-net-pci,netdev=n1,mac=" + mac1,
	}
}

// newDisk creates an empty (sparse) disk image of guestDiskSize.
func newDisk(t testing.TB, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, guestDiskSize); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something listens on 127.0.0.1:port (QEMU's
// socket netdev), reading /proc/net/tcp: a probing connection would be
// the one QEMU accepts.
func waitListening(t testing.TB, port int) {
	t.Helper()
	want := fmt.Sprintf("0100007F:%04X 00000000:0000 0A", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/net/tcp")
		if bytes.Contains(b, []byte(want)) {
			return
		}
	}
	t.Fatalf("QEMU does not listen on 127.0.0.1:%d", port)
}

// guestInitramfs is lab/vmtest's initramfs (this test binary, the
// modules) with drbd-utils' programs and the libraries they need (from the
// host, Debian like the guest's kernel).
// crc32c_generic goes first: libcrc32c asks the crypto API for crc32c
// when it loads, and the guest has no modprobe to load it on demand.
// qemu_fw_cfg shows QEMU's -fw_cfg items to the guest (benchParams).
func guestInitramfs(t testing.TB, k vmtest.Kernel) string {
	t.Helper()
	tree := vmtest.InitramfsTree(t, k, "crc32c_generic", "drbd", "qemu_fw_cfg", "virtio_pci", "virtio_blk", "virtio_net")
	utils := vmtest.DebianPackage(t, "drbd-utils")
	for _, p := range drbdPrograms {
		if err := tree.AddHost(p, filepath.Join(utils, p)); err != nil {
			t.Fatalf("initramfs: %v", err)
		}
	}
	// drbdadm runs handlers with /bin/sh -c: the host's dash.
	if err := tree.AddHost("bin/sh", "/bin/dash"); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	if err := tree.Libraries([]string{utils, "/"}); err != nil {
		t.Fatalf("initramfs libraries: %v", err)
	}
	return vmtest.WriteInitramfs(t, tree)
}
