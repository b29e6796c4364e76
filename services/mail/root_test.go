package mail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/image"
	"tandem/image/recipe"
	"tandem/image/workload"
	"tandem/internal/confine"
	"tandem/internal/container"
	"tandem/internal/netnstest"
	"tandem/internal/testenv"
	"tandem/services/mail/mailprobe"
	"tandem/services/mail/mailtls"
)

var template struct {
	once sync.Once
	path string
	err  error
}

// testTemplate builds the Postfix + Dovecot template from Debian's
// packages (cached in the image builder's cache) once per test binary.
func testTemplate(t testing.TB) string {
	t.Helper()
	template.once.Do(func() {
		ctx := context.Background()
		a, err := image.OpenArchive(ctx, recipe.Debian{Suite: "bookworm"}, image.DefaultCacheDir(), image.DefaultIndexMaxAge, t.Logf)
		if err != nil {
			template.err = err
			return
		}
		dir, err := os.MkdirTemp("", "tandem-mail-template-")
		if err != nil {
			template.err = err
			return
		}
		template.path = filepath.Join(dir, "mail.tar.zst")
		f, err := os.Create(template.path)
		if err != nil {
			template.err = err
			return
		}
		defer f.Close()
		_, template.err = workload.BuildPostfixDovecot(ctx, a, f, workload.Options{Logf: t.Logf})
	})
	if template.err != nil {
		t.Fatalf("build template: %v", template.err)
	}
	return template.path
}

// volume mounts a tmpfs as a stand-in for the replicated volume and
// unmounts it at the end (failing the test if it is busy).
func volume(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512m", "tandem-mail-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// nsWorkloadB returns a workload whose root is on a fresh volume and whose
// probes dial inside a new network namespace (loopback only), and a
// function that runs fn on a thread in that namespace.
func nsWorkloadB(t testing.TB) (*Workload, func(func() error) error, string) {
	tb := newTestbed(t, nil)
	return tb.w, tb.in, tb.vol
}

// testbed is a workload in a network namespace of its own (ns of n), its
// root on a fresh volume, with a certificate of a test mail CA.
type testbed struct {
	w   *Workload
	in  func(func() error) error // runs fn on a thread in ns
	vol string
	n   *netnstest.Net
	ns  string
	// caCert and caKey are the test mail CA's; caCert is the trust
	// anchor of the clients.
	caCert, caKey []byte

	mu     sync.Mutex
	site   Site     // what w.Site returns
	logged []string // what w logged
}

// logMatching returns the first line w logged that re matches.
func (tb *testbed) logMatching(re *regexp.Regexp) (string, bool) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, l := range tb.logged {
		if re.MatchString(l) {
			return l, true
		}
	}
	return "", false
}

// setSite changes what w.Site returns.
func (tb *testbed) setSite(s Site) {
	tb.mu.Lock()
	tb.site = s
	tb.mu.Unlock()
}

// newTestbed makes the test bed; params are added to the workload's.
func newTestbed(t testing.TB, params map[string]string) *testbed {
	testenv.RequireRoot(t)
	n := netnstest.New(t)
	return newTestbedIn(t, n, n.Host("mail"), params)
}

// newTestbedIn makes a test bed whose workload runs in the namespace ns
// of n.
func newTestbedIn(t testing.TB, n *netnstest.Net, ns string, params map[string]string) *testbed {
	tpl := testTemplate(t)
	vol := volume(t)
	p := map[string]string{"root": vol + "/mail", "template": tpl, "domain": "example.test"}
	maps.Copy(p, params)
	w, err := FromParams(p)
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{w: w, vol: vol, n: n, ns: ns}
	if tb.caCert, tb.caKey, err = mailtls.NewCA("test"); err != nil {
		t.Fatal(err)
	}
	pair, err := mailtls.Issue(tb.caCert, tb.caKey, []string{w.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	tb.site = Site{TLS: pair, Users: []User{testUser(t, "alice@example.test", "alice-pw"), testUser(t, "bob@example.test", "bob-pw")}}
	w.Site = func(context.Context) (Site, error) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return tb.site, nil
	}
	in := func(fn func() error) error { return n.Do(ns, fn) }
	tb.in = in
	w.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := in(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	w.Logf = func(format string, args ...any) {
		t.Logf(format, args...)
		tb.mu.Lock()
		tb.logged = append(tb.logged, fmt.Sprintf(format, args...))
		tb.mu.Unlock()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stop the workload: %v", err)
		}
	})
	return tb
}

// TestWorkload runs the real Postfix and Dovecot from the template in the
// container: mail in over SMTP, out over IMAP, stop leaves the volume
// unmountable, a second start keeps the root and the mail, a killed
// Postfix master is a failure and not a clean stop.
func TestWorkload(t *testing.T) {
	tb := newTestbed(t, nil)
	w, in, vol := tb.w, tb.in, tb.vol
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("Start: %v\n%s", err, readLog(w))
	}
	// The start says where its time went (docs/mail.md, "Start, stop,
	// monitor").
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`^mail: start: root \S+, configured \S+, container \S+$`),
		regexp.MustCompile(`^mail: ready in \S+: SMTP and IMAP answering after \S+, rspamd's milter after \S+ more$`),
	} {
		if l, ok := tb.logMatching(re); !ok {
			t.Errorf("no start profile line matching %s", re)
		} else {
			t.Logf("start profile: %s", l)
		}
	}
	if err := w.Monitor(ctx); err != nil {
		t.Fatalf("Monitor after Start = %v, want nil", err)
	}
	checkNice(t, w, ctx)
	checkConfined(t, w, ctx)
	// The init's exec (what the Zimbra hooks use) runs as a container user.
	r, _, err := w.host().Call(ctx, container.Request{Op: "exec", Argv: []string{"/usr/sbin/postconf", "-h", "myhostname"}, User: "postfix", Timeout: time.Minute})
	if err != nil || r.Exit != 0 || strings.TrimSpace(r.Output) != "mail.example.test" {
		t.Errorf("exec postconf in the container = %+v, %v; want exit 0 and mail.example.test", r, err)
	}
	const n = 20
	ids := sendN(t, w, ctx, "alice@example.test", n)
	if _, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", mailprobe.Message{From: "x@example.org", To: "nobody@example.test", Subject: "s", MessageID: "<u@x>", Body: "b"}); err == nil {
		t.Errorf("Send to an unknown user was acknowledged, want a rejection")
	}
	waitMessages(t, w, ctx, "alice@example.test", "alice-pw", ids)

	if err := w.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := w.Monitor(ctx); !errorsIs(err, ErrNotRunning) {
		t.Fatalf("Monitor after Stop = %v, want ErrNotRunning", err)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatalf("second Stop = %v, want nil", err)
	}
	assertNoProcessUses(t, vol)
	if out, err := exec.Command("umount", vol).CombinedOutput(); err != nil {
		t.Fatalf("umount %s after Stop: %v: %s", vol, err, out)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512m", "tandem-mail-test", vol).CombinedOutput(); err != nil {
		t.Fatalf("mount again: %v: %s", err, out)
	}
	// The tmpfs is gone with its mail: for the restart test, start on a
	// fresh volume, stop, mark the root, start again.
	if err := in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("Start on the new volume: %v\n%s", err, readLog(w))
	}
	ids = sendN(t, w, ctx, "bob@example.test", 3)
	waitMessages(t, w, ctx, "bob@example.test", "bob-pw", ids)
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(w.rootfs(), "etc/tandem-test-marker")
	testenv.WriteFile(t, marker, []byte("x"), 0o644)
	if err := in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("second Start: %v\n%s", err, readLog(w))
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("second Start unpacked the template again (marker gone): %v", err)
	}
	// rspamd's first answer since the container started is logged, with
	// how long it took.
	if !w.milterSeen {
		t.Errorf("the second Start returned before rspamd's milter answered")
	}
	if l, ok := tb.logMatching(regexp.MustCompile(`^mail: rspamd's milter answering, \S+ after the container started$`)); !ok {
		t.Errorf("no log line with the time rspamd's milter first answered")
	} else {
		t.Logf("after the second start: %s", l)
	}
	waitMessages(t, w, ctx, "bob@example.test", "bob-pw", ids)

	killMaster(t, w)
	if err := w.Monitor(ctx); err == nil || errorsIs(err, ErrNotRunning) {
		t.Fatalf("Monitor after SIGKILL of Postfix's master = %v, want an error that is not ErrNotRunning", err)
	} else {
		t.Logf("Monitor after SIGKILL of master: %v", err)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoProcessUses(t, vol)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func sendN(t *testing.T, w *Workload, ctx context.Context, to string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("<%d.%d@probe.test>", time.Now().UnixNano(), i)
		ok, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", mailprobe.Message{From: "sender@example.org", To: to, Subject: fmt.Sprintf("test %d", i), MessageID: id, Body: "hello\nworld"})
		if !ok || err != nil {
			t.Fatalf("Send %d to %s = %v, %v; want acknowledged\n%s", i, to, ok, err, readLog(w))
		}
		ids = append(ids, id)
	}
	return ids
}

// waitMessages logs in as user and waits until every id is in INBOX
// (delivery from Postfix's queue to Dovecot is asynchronous).
func waitMessages(t *testing.T, w *Workload, ctx context.Context, user, pass string, ids []string) {
	t.Helper()
	for {
		got, err := mailprobe.Inbox(ctx, w.Dial, "127.0.0.1:143", user, pass)
		if err == nil && containsAll(got, ids) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s's INBOX has %d of the %d sent messages (%v)\n%s", user, len(got), len(ids), err, readLog(w))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, x := range want {
		if !set[x] {
			return false
		}
	}
	return true
}

// readLog is the end of the container's log, to print.
func readLog(w *Workload) string {
	b := fullLog(w)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return b
}

// fullLog is the container's whole log, to search.
func fullLog(w *Workload) string {
	b, _ := os.ReadFile(filepath.Join(w.Root, logName))
	return string(b)
}

// killMaster SIGKILLs Postfix's master (found through the init's status).
func killMaster(t *testing.T, w *Workload) {
	t.Helper()
	// The status pids are in the container's PID namespace: find the
	// host pid by the pid file Postfix's master writes.
	b, err := os.ReadFile(filepath.Join(w.rootfs(), "var/spool/postfix/pid/master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	host := hostPid(t, inner)
	if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		st, _, err := w.host().Call(context.Background(), container.Request{Op: "status"})
		if err == nil && !allRunning(st.Services) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostPid maps a PID of the container's namespace to the host's through
// /proc/PID/status NSpid.
func hostPid(t *testing.T, inner int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == strconv.Itoa(inner) {
				if exe, _ := os.Readlink("/proc/" + e.Name() + "/exe"); strings.HasSuffix(exe, "/master") {
					return pid
				}
			}
		}
	}
	t.Fatalf("no host process for container pid %d", inner)
	return 0
}

// assertNoProcessUses fails if any process has its root, cwd or an open
// file on the volume.
func assertNoProcessUses(t *testing.T, vol string) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		links := []string{"/proc/" + e.Name() + "/root", "/proc/" + e.Name() + "/cwd"}
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			links = append(links, "/proc/"+e.Name()+"/fd/"+fd.Name())
		}
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, vol) {
				t.Errorf("process %s still uses the volume: %s -> %s", e.Name(), l, target)
			}
		}
	}
}

// checkNice: the container's init and the daemons it started run at
// WorkloadNice.
func checkNice(t *testing.T, w *Workload, ctx context.Context) {
	t.Helper()
	_, pid, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	// Every thread's children: the init's services are forked by
	// whichever thread its goroutine runs on.
	pids := []string{strconv.Itoa(pid)}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		kids, _ := os.ReadFile(f)
		pids = append(pids, strings.Fields(string(kids))...)
	}
	if len(pids) < 2 {
		t.Fatalf("container init %d has no children", pid)
	}
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// Field 19 is nice; the command (field 2) may hold spaces, so
		// count from its closing parenthesis.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if f[16] != strconv.Itoa(WorkloadNice) {
			t.Errorf("process %s of the container runs at nice %s, want %d", p, f[16], WorkloadNice)
		}
	}
}

// checkConfined: every process of the container but its init (the
// daemons and what they started) has no_new_privs and holds no
// capability outside postfixDovecotCaps, which is its whole bounding set;
// the init keeps what it had. (internal/container's tests cover exec.)
func checkConfined(t *testing.T, w *Workload, ctx context.Context) {
	t.Helper()
	keep := postfixDovecotCaps.Mask()
	// An SMTP and an IMAP client hold an smtpd (as postfix) and an
	// imap-login (as dovenull, chrooted) while the processes are read.
	for _, port := range []string{"25", "143"} {
		c, err := w.Dial(ctx, "tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("dial port %s: %v", port, err)
		}
		defer c.Close()
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatalf("greeting on port %s: %v", port, err)
		}
	}
	_, initPid, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	ist, err := confine.ProcStatus(initPid)
	if err != nil {
		t.Fatal(err)
	}
	if ist.Bnd&^keep == 0 || ist.NoNewPrivs {
		t.Fatalf("container init: bounding set %s, no_new_privs %v: nothing is left to drop, the checks below prove nothing", confine.Names(ist.Bnd), ist.NoNewPrivs)
	}
	names := map[string]bool{}
	for _, pid := range containerPids(t, initPid) {
		st, err := confine.ProcStatus(pid)
		if err != nil {
			continue // exited meanwhile
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		names[name] = true
		assertConfined(t, name+" (pid "+strconv.Itoa(pid)+")", st, keep)
	}
	for _, n := range []string{"dovecot", "master", "qmgr", "smtpd", "imap-login", "rspamd"} {
		if !names[n] {
			t.Errorf("no %s among the container's processes %v: it was not checked", n, names)
		}
	}
	t.Logf("container init: CapBnd %016x; its processes: CapBnd %016x (%s)", ist.Bnd, keep, confine.Names(keep))
}

func assertConfined(t *testing.T, who string, st confine.Status, keep uint64) {
	t.Helper()
	if st.Bnd != keep || (st.Eff|st.Prm|st.Inh|st.Amb)&^keep != 0 || !st.NoNewPrivs {
		t.Errorf("%s: bounding %s, effective %s, permitted %s, no_new_privs %v; want bounding %s, nothing outside it, no_new_privs",
			who, confine.Names(st.Bnd), confine.Names(st.Eff), confine.Names(st.Prm), st.NoNewPrivs, confine.Names(keep))
	}
}

// containerPids are the host PIDs of the processes in the PID namespace
// of the container's init, the init left out.
func containerPids(t *testing.T, initPid int) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPid))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == initPid {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// testUser is a user with password's hash.
func testUser(t testing.TB, name, password string) User {
	t.Helper()
	h, err := HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	return User{Name: name, Hash: h}
}
