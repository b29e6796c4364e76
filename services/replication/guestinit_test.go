package replication

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tandem/lab/vmtest"
)

// This file is the other half of TestGuestFailover (and, with
// guestbench_test.go, of BenchmarkReplicatedWrite): the same test binary,
// built static, is /init of both guests. The NIC's MAC says which guest
// it is. The guests drive the resource through Resource, talk to each
// other over TCP on the replication link to take turns (A tells B when it
// has demoted, B tells A when it has promoted) and report on the console.

const (
	guestDiskSize = 64 << 20
	guestDataSize = 4 << 20
	guestMACA     = "52:54:00:99:00:01"
	guestMACB     = "52:54:00:99:00:02"
	guestTalkPort = 7000
)

// Console marks, each after guestMark and followed by a value.
const (
	guestMark          = "TANDEM-DRBD "
	markMetaBefore     = "metadata-before"
	markCreated        = "created"
	markMetaAfter      = "metadata-after"
	markSynced         = "synced"
	markWrote          = "wrote"
	markRead           = "read"
	markPromoted       = "promoted"
	markRefused        = "refused"
	markStillSecondary = "still-secondary"
	markEvents         = "events2"
	markCut            = "cut"
	markFenced         = "fenced"
	markHandler        = "handler"
	markWroteFenced    = "wrote-after-fence"
	markHealed         = "healed"
	markSuspended      = "suspended"
	markFrozen         = "frozen"
	markResumed        = "resumed"
	markHandlerEnd     = "handler-end"
	markAuthRefused    = "auth-refused"
	markError          = "error"
)

// guestHandler is the name the test binary answers to as DRBD's handler
// (HandlerCommand); guestHandlerLog is where it says what it did.
const (
	guestHandler    = "tandem-replication-handler"
	guestHandlerLog = "/tmp/handler.log"
	// guestClusterAnswer, if it says no-quorum, makes the stand-in
	// cluster fail.
	guestClusterAnswer = "/tmp/cluster-answer"
)

func guestConfig() Config {
	return Config{
		Resource: "data",
		Nodes: [2]Node{
			{Name: "tandem-a", Address: netip.MustParseAddrPort("10.99.0.1:7789"), Disk: "/dev/vda"},
			{Name: "tandem-b", Address: netip.MustParseAddrPort("10.99.0.2:7789"), Disk: "/dev/vda"},
		},
		HandlerCommand: "/sbin/" + guestHandler,
		SharedSecret:   guestSecret,
	}
}

// guestSecret is the peers' shared secret; guestWrongSecret first brings
// each guest up with a secret of its own.
const guestSecret = "GuestPairSecret2026"

func guestSay(mark, format string, args ...any) {
	fmt.Printf("%s%s %s\n", guestMark, mark, fmt.Sprintf(format, args...))
}

// guestMain runs as PID 1 in a guest and powers it off at the end.
func guestMain() {
	if err := guestRun(); err != nil {
		guestSay(markError, "%v", err)
	}
	vmtest.PowerOff()
}

func guestRun() error {
	if err := vmtest.Init(); err != nil {
		return err
	}
	self, err := guestSetup()
	if err != nil {
		return err
	}
	rounds, err := benchRounds()
	if err != nil {
		return err
	}
	timeout := 150 * time.Second
	if rounds > 0 {
		timeout = 8 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r := &Resource{Config: guestConfig(), ConfigPath: "/etc/drbd.d/data.res", Self: self, Cmd: Exec{},
		Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }}
	if err := r.WriteConfig(); err != nil {
		return err
	}
	m, err := DiskMetadata("/dev/vda")
	if err != nil {
		return err
	}
	guestSay(markMetaBefore, "%v", m)
	if err := r.EnsureModule(ctx); err != nil {
		return err
	}
	created, err := r.EnsureMetadata(ctx)
	if err != nil {
		return err
	}
	guestSay(markCreated, "%v", created)
	if m, err = DiskMetadata("/dev/vda"); err != nil {
		return err
	}
	guestSay(markMetaAfter, "%v", m)
	if rounds == 0 {
		if err := guestWrongSecret(ctx, r); err != nil {
			return err
		}
	}
	if err := r.Up(ctx); err != nil {
		return err
	}
	if self == "tandem-a" && rounds > 0 {
		return guestBenchA(ctx, r, rounds)
	}
	if self == "tandem-a" {
		return guestA(ctx, r)
	}
	return guestB(ctx, r)
}

// guestWrongSecret brings the resource up with a secret only this guest
// has: DRBD must refuse the peer ("Authentication of peer failed") and
// never connect. Then it takes the resource down and writes the real
// config. Each guest waits for its own refusal, so whichever comes up
// with the real secret first is refused by the other until it follows.
func guestWrongSecret(ctx context.Context, r *Resource) error {
	wrong := *r
	wrong.Config.SharedSecret = "Only" + strings.ReplaceAll(r.Self, "-", "") + "KnowsThis"
	if err := wrong.WriteConfig(); err != nil {
		return err
	}
	if err := wrong.Up(ctx); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
		if err != nil {
			return fmt.Errorf("kernel log: %w", err)
		}
		if strings.Contains(string(buf[:n]), "Authentication of peer failed") {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("DRBD logged no refused peer with different secrets: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	s, err := wrong.Status(ctx)
	if err != nil {
		return err
	}
	guestSay(markAuthRefused, "connection=%s", s.Connection)
	if err := wrong.Down(ctx); err != nil {
		return err
	}
	return r.WriteConfig()
}

// guestSetup names the host after its MAC, brings up lo, eth0 (the
// replication link, which the test cuts) and eth1 (the guests' control
// link) and makes the directories drbd-utils uses.
func guestSetup() (string, error) {
	mac, err := os.ReadFile("/sys/class/net/eth0/address")
	if err != nil {
		return "", err
	}
	self, addrs := "tandem-a", map[string]string{"eth0": "10.99.0.1/24", "eth1": "10.98.0.1/24"}
	if strings.TrimSpace(string(mac)) == guestMACB {
		self, addrs = "tandem-b", map[string]string{"eth0": "10.99.0.2/24", "eth1": "10.98.0.2/24"}
	}
	if err := unix.Sethostname([]byte(self)); err != nil {
		return "", fmt.Errorf("sethostname: %w", err)
	}
	for _, d := range []string{"/etc/drbd.d", "/var/lib/drbd", "/run/drbd", "/var/lock"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Symlink("/run", "/var/run"); err != nil {
		return "", err
	}
	// drbdadm, run by the kernel for a handler, reads /etc/drbd.conf.
	if err := os.WriteFile("/etc/drbd.conf", []byte("include \"/etc/drbd.d/*.res\";\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Symlink("/init", "/sbin/"+guestHandler); err != nil {
		return "", err
	}
	for _, name := range []string{"lo", "eth0", "eth1"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return "", fmt.Errorf("link %s: %w", name, err)
		}
		if addr, ok := addrs[name]; ok {
			a, _ := netlink.ParseAddr(addr)
			if err := netlink.AddrAdd(l, a); err != nil {
				return "", fmt.Errorf("address %s: %w", addr, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return "", fmt.Errorf("link %s up: %w", name, err)
		}
	}
	return self, nil
}

// guestA does the initial sync, writes the data, demotes, lets B promote
// and then tries to promote while B is primary.
func guestA(ctx context.Context, r *Resource) error {
	if _, err := waitStatus(ctx, r, func(s Status) bool { return s.Connection == "Connected" }); err != nil {
		return err
	}
	if err := r.Primary(ctx, true); err != nil {
		return err
	}
	guestEvents(ctx, r, "syncing")
	start := time.Now()
	if _, err := waitStatus(ctx, r, Status.Connected); err != nil {
		return err
	}
	guestSay(markSynced, "%.1fs", time.Since(start).Seconds())
	sum, err := writeData(r.Config.Device())
	if err != nil {
		return err
	}
	guestSay(markWrote, "%x", sum)
	if err := r.Secondary(ctx); err != nil {
		return err
	}
	c, err := dialPeer(ctx, "10.98.0.2")
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintln(c, "demoted")
	rd := bufio.NewReader(c)
	if l, err := rd.ReadString('\n'); err != nil || l != "promoted\n" {
		return fmt.Errorf("waiting for B to promote: %q, %v", l, err)
	}
	if err := r.Primary(ctx, false); err != nil {
		guestSay(markRefused, "%v", strings.ReplaceAll(err.Error(), "\n", " | "))
	} else {
		guestSay(markError, "promoted while the peer is primary")
	}
	s, err := r.Status(ctx)
	if err != nil {
		return err
	}
	guestSay(markStillSecondary, "role=%s peer-role=%s", s.Role, s.PeerRole)
	guestEvents(ctx, r, "secondary-connected")
	fmt.Fprintln(c, "cut")
	time.Sleep(500 * time.Millisecond)
	s, err = guestCut(ctx, r)
	if err != nil {
		return err
	}
	guestSay(markCut, "role=%s connection=%s peer-disk=%s", s.Role, s.Connection, s.PeerDisk)
	guestEvents(ctx, r, "secondary-cut")
	if err := expect(rd, "fenced"); err != nil {
		return err
	}
	if err := guestHeal(ctx, r); err != nil {
		return err
	}
	fmt.Fprintln(c, "resynced")
	if err := expect(rd, "cut"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := guestCut(ctx, r); err != nil {
		return err
	}
	if err := r.Down(ctx); err != nil {
		return err
	}
	guestEvents(ctx, r, "down")
	if s, err = r.Status(ctx); err != nil {
		return err
	}
	guestSay("down", "up=%v", s.Up)
	return nil
}

// guestCut takes A's replication NIC down, like a pulled cable, and waits
// for DRBD to notice.
func guestCut(ctx context.Context, r *Resource) (Status, error) {
	l, err := netlink.LinkByName("eth0")
	if err != nil {
		return Status{}, err
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return Status{}, err
	}
	return waitStatus(ctx, r, func(s Status) bool { return s.Connection != "Connected" })
}

// guestHeal brings A's replication NIC back: DRBD reconnects and A, which
// B fenced, resyncs from B as the target.
func guestHeal(ctx context.Context, r *Resource) error {
	l, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return err
	}
	start := time.Now()
	s, err := waitStatus(ctx, r, Status.Connected)
	if err != nil {
		return err
	}
	guestSay(markHealed, "role=%s disk=%s peer-role=%s after %.1fs", s.Role, s.Disk, s.PeerRole, time.Since(start).Seconds())
	// The after-resync-target handler runs once the resync is done; give
	// it a moment, since the state changes first.
	for i := 0; i < 50 && !strings.Contains(readHandlerLog(), "clear"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	guestSay(markHandler, "%s", readHandlerLog())
	return nil
}

func expect(rd *bufio.Reader, msg string) error {
	l, err := rd.ReadString('\n')
	if err != nil || l != msg+"\n" {
		return fmt.Errorf("waiting for the peer's %q: %q, %v", msg, l, err)
	}
	return nil
}

func readHandlerLog() string {
	b, _ := os.ReadFile(guestHandlerLog)
	return strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), "; ")
}

// guestB waits for A to demote, promotes, reads the data back and reports
// its state; in the benchmark it only waits for A to finish.
func guestB(ctx context.Context, r *Resource) error {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", guestTalkPort))
	if err != nil {
		return err
	}
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	first, err := rd.ReadString('\n')
	if first == "bench\n" {
		// BenchmarkReplicatedWrite: A writes; B takes A's link passes
		// and stays up until A is done.
		go benchSink()
		return expect(rd, "done")
	}
	if err != nil || first != "demoted\n" {
		return fmt.Errorf("waiting for A to demote: %q, %v", first, err)
	}
	if err := r.Primary(ctx, false); err != nil {
		return err
	}
	sum, err := readData(r.Config.Device())
	if err != nil {
		return err
	}
	guestSay(markRead, "%x", sum)
	guestEvents(ctx, r, "primary-connected")
	s, err := r.Status(ctx)
	if err != nil {
		return err
	}
	guestSay(markPromoted, "role=%s disk=%s connection=%s peer-role=%s peer-disk=%s", s.Role, s.Disk, s.Connection, s.PeerRole, s.PeerDisk)
	fmt.Fprintln(c, "promoted")
	if err := expect(rd, "cut"); err != nil {
		return err
	}
	if err := guestFenced(ctx, r); err != nil {
		return err
	}
	fmt.Fprintln(c, "fenced")
	if err := expect(rd, "resynced"); err != nil {
		return err
	}
	s, err = r.Status(ctx)
	if err != nil {
		return err
	}
	guestSay(markHealed, "role=%s connection=%s peer-disk=%s", s.Role, s.Connection, s.PeerDisk)
	if err := os.WriteFile(guestClusterAnswer, []byte("no-quorum"), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(c, "cut")
	return guestFrozen(ctx, r)
}

// guestFrozen: A is cut off again but the cluster has no quorum, so the
// handler fails and B's I/O must stay frozen, until the node resumes it
// (as the daemon does once the cluster outdated the peer after all).
func guestFrozen(ctx context.Context, r *Resource) error {
	s, err := waitStatus(ctx, r, func(s Status) bool { return s.Connection != "Connected" && s.Suspended != "no" })
	if err != nil {
		return err
	}
	guestSay(markSuspended, "role=%s suspended=%s peer-disk=%s", s.Role, s.Suspended, s.PeerDisk)
	guestEvents(ctx, r, "primary-frozen")
	done := make(chan error, 1)
	go func() { _, err := writeData(r.Config.Device()); done <- err }()
	select {
	case err := <-done:
		guestSay(markFrozen, "no: write returned %v", err)
		return nil
	case <-time.After(3 * time.Second):
		guestSay(markFrozen, "yes")
	}
	if err := r.ResumeIO(ctx); err != nil {
		return err
	}
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		guestSay(markResumed, "ok")
	case <-time.After(20 * time.Second):
		guestSay(markResumed, "still frozen")
	}
	guestSay(markHandlerEnd, "%s", readHandlerLog())
	return nil
}

// guestFenced waits for DRBD to lose A and run the fence-peer handler,
// then checks that I/O goes on.
func guestFenced(ctx context.Context, r *Resource) error {
	start := time.Now()
	s, err := waitStatus(ctx, r, func(s Status) bool { return s.Connection != "Connected" && s.PeerDisk == "Outdated" })
	if err != nil {
		return err
	}
	// DRBD marks the peer Outdated and then resumes I/O: a status read
	// between the two still shows it suspended. A few seconds for the
	// second; if I/O stays frozen the host sees it in the mark.
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	if resumed, err := waitStatus(c, r, func(s Status) bool { return s.Suspended == "no" }); err == nil {
		s = resumed
	}
	cancel()
	guestSay(markFenced, "role=%s suspended=%s peer-disk=%s after %.1fs", s.Role, s.Suspended, s.PeerDisk, time.Since(start).Seconds())
	guestEvents(ctx, r, "primary-fenced")
	guestSay(markHandler, "%s", readHandlerLog())
	done := make(chan error, 1)
	go func() { _, err := writeData(r.Config.Device()); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		guestSay(markWroteFenced, "ok")
	case <-time.After(20 * time.Second):
		guestSay(markWroteFenced, "frozen")
	}
	return nil
}

// guestEvents prints drbdsetup events2's output as the host's -update
// captures it.
func guestEvents(ctx context.Context, r *Resource, label string) {
	out, err := r.Cmd.Run(ctx, "drbdsetup", "events2", "--now", "--statistics", r.Config.Resource)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		guestSay(markEvents, "%s|%s", label, line)
	}
	if err != nil {
		guestSay(markEvents, "%s|# %s", label, strings.ReplaceAll(err.Error(), "\n", " "))
	}
}

// guestCluster stands in for the cluster daemon in the handler: it finds
// the peer outdated, or has no quorum if guestClusterAnswer says so, and
// logs the call.
type guestCluster struct{}

func (guestCluster) OutdatePeer(_ context.Context, res, peer string) (PeerFence, error) {
	if b, _ := os.ReadFile(guestClusterAnswer); string(b) == "no-quorum" {
		handlerLog("no-quorum %s %s", res, peer)
		return 0, errors.New("no quorum")
	}
	handlerLog("outdate %s %s", res, peer)
	return PeerOutdated, nil
}

func (guestCluster) ClearOutdated(_ context.Context, res, node string) error {
	handlerLog("clear %s %s", res, node)
	return nil
}

func handlerLog(format string, args ...any) {
	f, err := os.OpenFile(guestHandlerLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		fmt.Fprintf(f, format+"\n", args...)
		f.Close()
	}
}

// guestHandlerMain is the test binary run by drbdadm as HandlerCommand.
func guestHandlerMain(args []string) int {
	c := guestConfig()
	self, _ := os.Hostname()
	quiet := func(string, ...any) {}
	ctx := context.Background()
	if len(args) == 1 && args[0] == "fence-peer" {
		return FencePeer(ctx, &c, self, guestCluster{}, os.Getenv, quiet)
	}
	if len(args) == 1 && args[0] == "after-resync-target" {
		return AfterResyncTarget(ctx, &c, self, guestCluster{}, os.Getenv, quiet)
	}
	handlerLog("unexpected handler call %q", args)
	return ExitFailed
}

func waitStatus(ctx context.Context, r *Resource, ok func(Status) bool) (Status, error) {
	for {
		s, err := r.Status(ctx)
		if err == nil && ok(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("waiting for the resource: last status %+v, %v: %w", s, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func dialPeer(ctx context.Context, host string) (net.Conn, error) {
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", host, guestTalkPort), 2*time.Second)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial peer: %v: %w", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// guestData is the data A writes and B reads: seeded, so a wrong block
// shows as a different checksum.
func guestData() []byte {
	b := make([]byte, guestDataSize)
	rng := rand.NewChaCha8([32]byte{'t', 'a', 'n', 'd', 'e', 'm'})
	rng.Read(b)
	return b
}

func writeData(dev string) ([]byte, error) {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := guestData()
	if _, err := f.WriteAt(b, 0); err != nil {
		return nil, fmt.Errorf("write %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", dev, err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

func readData(dev string) ([]byte, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, guestDataSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", dev, err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}
