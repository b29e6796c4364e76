package mail

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/container"
	"tandem/internal/mailroot"
	"tandem/internal/testenv"
	"tandem/services/mail/mailprobe"
)

// gtubeRefused is swaks' transcript of a 554 in answer to the end of the
// message's data ("<**" and "->" in the clear, "<~*" and "~>" over TLS).
var gtubeRefused = regexp.MustCompile(`[-~]> \.\n\s*<[~*]\* 554 5\.7\.1 Gtube pattern`)

// spamStatus is rspamd's X-Spam-Status header in a message's header.
var spamStatus = regexp.MustCompile(`\nX-Spam-Status: (Yes|No), score=[0-9.]+`)

// gtube is the GTUBE test string: any filter rejects a message that
// holds it.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// TestWorkloadRspamd: rspamd as the milter of every smtpd, with clients
// from another host and a resolver that never answers (no internet). GTUBE is refused at DATA with a 5xx on 25 and on
// 587; a clean message on 25 is scanned, its lookups timing out, and
// delivered with X-Spam-Status (and X-Spam: Yes if the failed lookups
// made it score 6 or more); a message
// submitted on 587 with AUTH reaches the outside world's mail server (a
// second Postfix + Dovecot, the smarthost, in the client's namespace) and
// lands in a mailbox there with a DKIM signature that Debian's
// python3-dkim verifies against the TXT record tandemctl mail dkim show
// prints; a domain added later is signed with its own key
// after a reload (the services' processes stay, rspamd's workers are
// new). rspamd
// listens on no TCP port, its keys are readable by root and rspamd
// only, and rspamadm configtest finds the configuration good.
func TestWorkloadRspamd(t *testing.T) {
	testenv.RequireTool(t, "swaks", "python3", "/usr/bin/python3", "ss")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb := newTestbed(t, map[string]string{ParamListen: tlsVIP})
	w := tb.w
	key := testDKIMKey(t, "example.test")
	site := tb.site
	site.DKIM = []DKIMKey{key}
	if err := site.Settings.Set(SetSmarthost, tlsClient+":25"); err != nil {
		t.Fatal(err)
	}
	if err := site.Settings.Set(SetRelayNetworks, "192.0.2.0/24"); err != nil { // signed as loopback is
		t.Fatal(err)
	}
	tb.setSite(site)
	cl := tb.n.Host("client")
	tb.n.Link(tb.ns, "eth0", tlsOther+"/24", cl, "eth0", tlsClient+"/24")
	// No internet, as in the lab: the node's resolver takes every query
	// and never answers.
	blackholeDNS(t, ctx, tb, cl)
	w.resolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	testenv.WriteFile(t, w.resolvConf, []byte("nameserver "+tlsClient+"\noptions timeout:1 attempts:1\n"), 0o644)
	if err := tb.in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("Start: %v\n%s", err, readLog(w))
	}
	tb.n.Run(tb.ns, "ip", "addr", "add", tlsVIP+"/24", "dev", "eth0")
	// Start waits up to milterStartWait for rspamd; a slower machine
	// may take longer to compile its rules the first time.
	for deadline := time.Now().Add(3 * time.Minute); !w.milterSeen; time.Sleep(time.Second) {
		if err := w.checkMilter(ctx); err != nil || time.Now().After(deadline) {
			t.Fatalf("rspamd's milter never answered: %v\n%s", err, readLog(w))
		}
	}
	inet := theInternet(t, ctx, tb, cl)

	swaks := func(port string, args ...string) (string, error) {
		out, err := tb.n.Cmd(ctx, cl, "swaks", append([]string{"--server", tlsVIP, "--port", port, "--timeout", "60"}, args...)...).CombinedOutput()
		return string(out), err
	}
	alice := []string{"--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw", "--from", "alice@example.test"}

	// GTUBE: a 5xx in answer to the message's data, on 25 and on 587.
	for _, c := range []struct {
		port string
		args []string
	}{
		{"25", []string{"--from", "x@example.net", "--to", "bob@example.test"}},
		{"587", append(slices.Clone(alice), "--to", "bob@example.test")},
	} {
		out, err := swaks(c.port, append(c.args, "--body", "Test message\n"+gtube+"\n")...)
		if err == nil || !gtubeRefused.MatchString(out) {
			t.Errorf("GTUBE on %s: swaks = %v; want 554 at the end of DATA\n%s\n%s", c.port, err, out, readLog(w))
		}
	}

	// A clean message from another server: scanned (its lookups time
	// out) and delivered, with the headers.
	id := fmt.Sprintf("<clean.%d@example.net>", time.Now().UnixNano())
	t0 := time.Now()
	if out, err := swaks("25", "--ehlo", "mx.example.net", "--from", "someone@example.net", "--to", "bob@example.test", "--header", "Message-Id: "+id,
		"--header", "Subject: lunch", "--body", "Shall we have lunch on Thursday?\n"); err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued") {
		t.Fatalf("a clean message on 25: %v\n%s\n%s", err, out, readLog(w))
	}
	t.Logf("a clean message from another server, its DNS lookups unanswered, accepted in %s", time.Since(t0).Round(time.Millisecond))
	waitMessages(t, w, ctx, "bob@example.test", "bob-pw", []string{id})
	hdr := messageHeader(t, w, ctx, "bob@example.test", "bob-pw", id)
	// Without DNS, rspamd's checks of the sender's host names fail (no
	// PTR, the helo and the sender's domain do not resolve) and add
	// about 6: scanned and delivered, maybe marked X-Spam: Yes.
	if m := spamStatus.FindStringSubmatch(hdr); m == nil {
		t.Errorf("the clean message's header has no X-Spam-Status:\n%s\n%s", hdr, readLog(w))
	} else {
		t.Logf("the clean message: %s", strings.TrimSpace(m[0]))
	}

	// Submitted on 587: signed, and the signature verifies against the
	// published record.
	signed := fmt.Sprintf("<signed.%d@example.test>", time.Now().UnixNano())
	if out, err := swaks("587", append(slices.Clone(alice), "--to", "someone@example.net", "--header", "Message-Id: "+signed, "--header", "Subject: signed")...); err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued") {
		t.Fatalf("587 with AUTH: %v\n%s\n%s", err, out, readLog(w))
	}
	checkSigned(t, ctx, inet, signed, key)

	checkNoTCP(t, ctx, tb)
	// rspamd's own check of the whole configuration tandem wrote.
	r, _, err := w.host().Call(ctx, container.Request{Op: "exec", Argv: []string{"/usr/bin/rspamadm", "configtest", "-c", rspamdConf}, Timeout: 2 * time.Minute})
	if err != nil || r.Exit != 0 || !strings.Contains(r.Output, "syntax OK") {
		t.Errorf("rspamadm configtest = %+v, %v; want syntax OK", r, err)
	}
	for _, p := range []string{dkimDir, key.path()} {
		st, err := os.Stat(filepath.Join(w.rootfs(), p))
		want := os.FileMode(0o640)
		if p == dkimDir {
			want = os.ModeDir | 0o750
		}
		if err != nil || st.Mode() != want || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Sys().(*syscall.Stat_t).Gid != mailroot.RspamdID {
			t.Errorf("%s: %v, %v; want %v root:%s", p, st.Mode(), err, want, mailroot.RspamdUser)
		}
	}

	// A domain added: after the reload its user's mail is signed with
	// its key. The services' processes stay; rspamd's workers are new.
	before, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	workers := rspamdWorkers(t, w, ctx)
	orgKey := testDKIMKey(t, "example.org")
	site.Domains = []string{"example.org"}
	site.Users = append(slices.Clone(site.Users), testUser(t, "carol@example.org", "carol-pw"))
	site.DKIM = []DKIMKey{key, orgKey}
	tb.setSite(site)
	if err := w.Monitor(ctx); err != nil {
		t.Fatalf("Monitor after a domain was added: %v\n%s", err, readLog(w))
	}
	// rspamd's new workers take over within seconds of the reload: until
	// then a message of the new domain may leave unsigned.
	carol := []string{"--tls", "--auth", "PLAIN", "--auth-user", "carol@example.org", "--auth-password", "carol-pw", "--from", "carol@example.org", "--to", "someone@example.net"}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		id := fmt.Sprintf("<org.%d@example.org>", time.Now().UnixNano())
		out, err := swaks("587", append(carol, "--header", "Message-Id: "+id)...)
		if err == nil && strings.Contains(out, "250 2.0.0 Ok: queued") {
			if msg := arrived(t, ctx, inet, id); bytes.Contains(msg, []byte("d=example.org;")) {
				checkSigned(t, ctx, inet, id, orgKey)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("587 as the new domain's user: no message signed for example.org within a minute of the reload: %v\n%s\n%s", err, out, readLog(w))
		}
	}
	after, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range before.Services {
		if a := after.Services[i]; a.Name != s.Name || a.Pid != s.Pid || !a.Running {
			t.Errorf("service %s was %+v before the reload, %+v after; want the same process", s.Name, s, a)
		}
	}
	if now := rspamdWorkers(t, w, ctx); len(now) == 0 || slices.ContainsFunc(now, func(p int) bool { return slices.Contains(workers, p) }) {
		t.Errorf("rspamd's workers were %v before the reload, %v after; want new ones", workers, now)
	}
}

// rspamdWorkers are the host PIDs of rspamd's processes other than its
// main process (the service).
func rspamdWorkers(t *testing.T, w *Workload, ctx context.Context) []int {
	t.Helper()
	_, initPid, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, pid := range containerPids(t, initPid) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if strings.TrimSpace(string(comm)) == "rspamd" && !bytes.Contains(st, []byte("\nUid:\t0\t")) {
			out = append(out, pid)
		}
	}
	return out
}

// blackholeDNS takes DNS queries on tlsClient:53 (UDP) in cl and never
// answers them.
func blackholeDNS(t *testing.T, ctx context.Context, tb *testbed, cl string) {
	t.Helper()
	cmd := tb.n.Cmd(ctx, cl, "python3", "-c", `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    s.recvfrom(4096)
`, tlsClient)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tb.n.Start(cmd)
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("the black-hole resolver did not start: %v", err)
	}
}

// testDKIMKey makes a key for domain (fast enough: a 2048-bit RSA key
// takes a fraction of a second).
func testDKIMKey(t *testing.T, domain string) DKIMKey {
	t.Helper()
	k, err := NewDKIMKey(domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// theInternet starts the outside world's mail server in cl's namespace on
// tlsClient: a second workload from the same template serving example.net,
// where someone@example.net has a mailbox, with tb's resolver (none
// answers).
func theInternet(t *testing.T, ctx context.Context, tb *testbed, cl string) *testbed {
	t.Helper()
	inet := newTestbedIn(t, tb.n, cl, map[string]string{"domain": "example.net", ParamListen: tlsClient})
	inet.site.Users = []User{testUser(t, "someone@example.net", "someone-pw")}
	inet.w.resolvConf = tb.w.resolvConf
	if err := inet.in(func() error { return inet.w.Start(ctx) }); err != nil {
		t.Fatalf("start the outside world's mail server: %v\n%s", err, readLog(inet.w))
	}
	waitListening(t, tb, cl, tlsClient+":25")
	return inet
}

// arrived waits until someone@example.net's mailbox on inet has the
// message with Message-ID id and returns it as it was delivered.
func arrived(t *testing.T, ctx context.Context, inet *testbed, id string) []byte {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if msg, ok := fetchMessage(t, ctx, inet.w, "someone@example.net", "someone-pw", id); ok {
			return msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outside world's server never got %s\n%s", id, readLog(inet.w))
		}
	}
}

// fetchMessage returns user's message with Message-ID id byte for byte
// (IMAP's BODY.PEEK[]), if it is there.
func fetchMessage(t *testing.T, ctx context.Context, w *Workload, user, pass, id string) ([]byte, bool) {
	t.Helper()
	c, seq := findMessage(t, ctx, w, user, pass, id)
	defer c.Logout()
	if seq == 0 {
		return nil, false
	}
	msg, err := c.Fetch(seq)
	if err != nil {
		t.Fatal(err)
	}
	return msg, true
}

// findMessage logs in as user and returns the session with INBOX selected
// and the sequence number of the message with Message-ID id (0: none).
func findMessage(t *testing.T, ctx context.Context, w *Workload, user, pass, id string) (*mailprobe.IMAP, int) {
	t.Helper()
	c, err := mailprobe.Login(ctx, w.Dial, "127.0.0.1:143", user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX"); err != nil {
		c.Logout()
		t.Fatal(err)
	}
	seq, err := c.Search("Message-ID", id)
	if err != nil || len(seq) > 1 {
		c.Logout()
		t.Fatalf("search %s: %v, %v", id, seq, err)
	}
	if len(seq) == 0 {
		return c, 0
	}
	return c, seq[0]
}

// checkSigned waits until the message with Message-ID id has arrived on
// inet and checks its DKIM signature against k's record with python3-dkim.
func checkSigned(t *testing.T, ctx context.Context, inet *testbed, id string, k DKIMKey) {
	t.Helper()
	msg := arrived(t, ctx, inet, id)
	if !bytes.Contains(msg, []byte("DKIM-Signature: ")) {
		t.Fatalf("%s arrived without a DKIM-Signature:\n%s", id, msg)
	}
	file := filepath.Join(t.TempDir(), "message.eml")
	testenv.WriteFile(t, file, msg, 0o644)
	txt, err := k.TXT()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/dkim_verify.py", file, k.Name(), txt).CombinedOutput()
	out := string(b)
	want := fmt.Sprintf("verified: d=%s s=%s", k.Domain, k.Selector)
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("dkim_verify.py = %v, want %q\n%s\nthe message:\n%s", err, want, out, msg)
	}
}

// messageHeader returns the header of user's message with Message-ID id.
func messageHeader(t *testing.T, w *Workload, ctx context.Context, user, pass, id string) string {
	t.Helper()
	c, seq := findMessage(t, ctx, w, user, pass, id)
	defer c.Logout()
	if seq == 0 {
		t.Fatalf("no message %s", id)
	}
	lines, err := c.Command(fmt.Sprintf("FETCH %d BODY.PEEK[HEADER]", seq))
	if err != nil {
		t.Fatal(err)
	}
	return "\n" + strings.Join(lines, "\n")
}

// checkNoTCP: no process of rspamd's listens on TCP (in the node's
// network namespace, which the container shares).
func checkNoTCP(t *testing.T, ctx context.Context, tb *testbed) {
	t.Helper()
	out, err := tb.n.Cmd(ctx, tb.ns, "ss", "-Hltnp").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"master"`) {
		t.Fatalf("ss -ltnp lists no Postfix master; it proves nothing:\n%s", out)
	}
	if strings.Contains(string(out), "rspamd") {
		t.Errorf("rspamd listens on TCP:\n%s", out)
	}
}
