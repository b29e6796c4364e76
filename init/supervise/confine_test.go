package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"tandem/internal/confine"
	"tandem/internal/testenv"
)

// report is what a confined test service says of itself, as its STATUS.
type report struct {
	Status   confine.Status
	TCP, UDP string // "ok" or the error binding port 53
}

// reportConfinement is the "confined" service: it reads its own status,
// tries to bind port 53 on TCP and UDP, and sends both as STATUS (which
// also needs its notify socket to be writable by it) with READY=1.
func reportConfinement() {
	var r report
	st, err := confine.ProcStatus(os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r.Status = st
	r.TCP, r.UDP = "ok", "ok"
	if ln, err := net.Listen("tcp4", "0.0.0.0:53"); err != nil {
		r.TCP = err.Error()
	} else {
		ln.Close()
	}
	if pc, err := net.ListenPacket("udp4", "0.0.0.0:53"); err != nil {
		r.UDP = err.Error()
	} else {
		pc.Close()
	}
	b, _ := json.Marshal(r)
	if _, err := daemon.SdNotify(false, "STATUS="+string(b)+"\nREADY=1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// netnsEnv marks the test binary re-executed in a network namespace of
// its own, where binding port 53 touches nothing of the host's.
const netnsEnv = "TANDEM_SUPERVISE_NETNS"

// TestConfinedService starts services through the supervisor as root:
// one confined to uid 60053 with CAP_NET_BIND_SERVICE binds port 53 and
// holds that capability only, the other confined with none cannot bind
// it; both have no_new_privs and their own notify socket.
func TestConfinedService(t *testing.T) {
	testenv.RequireRoot(t)
	if os.Getenv(netnsEnv) == "" {
		inNewNetns(t, "TestConfinedService")
		return
	}
	dir := helperDir(t)
	bind := Confinement{UID: 60053, GID: 60053, Groups: []uint32{60000}, Caps: []uintptr{unix.CAP_NET_BIND_SERVICE}}
	none := Confinement{UID: 60054, GID: 60054}
	mk := func(name string, c *Confinement) Spec {
		return Spec{Name: name, Path: filepath.Join(dir, "helper"), Env: []string{"TANDEM_TEST_SERVICE=confined"}, Notify: true, Confine: c}
	}
	s := newSupIn(t, filepath.Join(dir, "notify"), mk("bind", &bind), mk("none", &none))
	waitReady(t, s)
	st := s.States()
	got, nocap := decodeReport(t, st[0]), decodeReport(t, st[1])

	k := uint64(1) << unix.CAP_NET_BIND_SERVICE
	g := got.Status
	if g.UID != [4]uint32{60053, 60053, 60053, 60053} || g.GID != [4]uint32{60053, 60053, 60053, 60053} || !slices.Equal(g.Groups, []uint32{60000}) {
		t.Errorf("bind service: uid %v, gid %v, groups %v; want 60053 throughout, groups [60000]", g.UID, g.GID, g.Groups)
	}
	if g.Eff != k || g.Prm != k || g.Amb != k || g.Bnd != k || g.Inh&^k != 0 || !g.NoNewPrivs {
		t.Errorf("bind service: eff %s, prm %s, amb %s, bnd %s, inh %s, no_new_privs %v; want cap_net_bind_service in all, no_new_privs",
			confine.Names(g.Eff), confine.Names(g.Prm), confine.Names(g.Amb), confine.Names(g.Bnd), confine.Names(g.Inh), g.NoNewPrivs)
	}
	if got.TCP != "ok" || got.UDP != "ok" {
		t.Errorf("bind service: bind port 53: tcp %s, udp %s; want ok", got.TCP, got.UDP)
	}
	n := nocap.Status
	if n.UID[1] != 60054 || n.Eff|n.Prm|n.Amb|n.Bnd != 0 || !n.NoNewPrivs {
		t.Errorf("none service: euid %d, eff %s, prm %s, amb %s, bnd %s, no_new_privs %v; want 60054, nothing, no_new_privs",
			n.UID[1], confine.Names(n.Eff), confine.Names(n.Prm), confine.Names(n.Amb), confine.Names(n.Bnd), n.NoNewPrivs)
	}
	if !strings.Contains(nocap.TCP, "permission denied") || !strings.Contains(nocap.UDP, "permission denied") {
		t.Errorf("none service: bind port 53: tcp %q, udp %q; want permission denied (else the bind above proves nothing)", nocap.TCP, nocap.UDP)
	}
	t.Logf("bind service: CapEff %016x CapAmb %016x CapBnd %016x NoNewPrivs %v; tcp/udp 53: %s/%s", g.Eff, g.Amb, g.Bnd, g.NoNewPrivs, got.TCP, got.UDP)
}

func decodeReport(t *testing.T, st State) report {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(st.Status), &r); err != nil {
		t.Fatalf("service %s: STATUS %q: %v", st.Name, st.Status, err)
	}
	return r
}

// inNewNetns runs test in this test binary re-executed in a new network
// namespace, and fails if it fails there.
func inNewNetns(t *testing.T, test string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	t.Logf("%s in a new network namespace:\n%s", test, out)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Fatalf("%s in a new network namespace failed: %v", test, err)
	case err != nil:
		t.Fatalf("run %s in a new network namespace: %v", test, err)
	case !strings.Contains(string(out), "--- PASS: "+test):
		t.Fatalf("%s in a new network namespace did not pass", test)
	}
}

// helperDir is a directory every user can enter with a copy of the test
// binary in it (helper) that every user can run: the go tool builds the
// test binary in a directory only root can enter.
func helperDir(t *testing.T) string {
	t.Helper()
	dir := testenv.PublicDir(t)
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "helper"), b, 0o755)
	return dir
}

// newSupIn is newSup with the notify sockets in dir.
func newSupIn(t *testing.T, dir string, specs ...Spec) *Supervisor {
	t.Helper()
	s, _ := newSupOpts(t, Options{NotifyDir: dir, MinBackoff: 50 * time.Millisecond, Logf: t.Logf, StopTimeout: 2 * time.Second}, specs...)
	return s
}
