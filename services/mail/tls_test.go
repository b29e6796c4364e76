package mail

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/container"
	"tandem/internal/testenv"
	"tandem/services/mail/mailtls"
)

// The TLS test's network: the workload's namespace has the VIP and
// another address on eth0, the client's namespace the other end.
const (
	tlsVIP    = "10.58.0.1"
	tlsOther  = "10.58.0.3" // the node's own address: nothing listens there
	tlsClient = "10.58.0.2"
)

// TestWorkloadTLS runs real clients from Debian's packages against the
// workload from another host: swaks submits with STARTTLS and AUTH on
// 587 and with TLS from the first byte on 465, is refused as an open
// relay and without AUTH; Python's imaplib is refused a plaintext LOGIN
// on 143 and logs in with STARTTLS and on 993, where it reads the
// message; openssl s_client sees the chain and the name on every port; a
// new certificate is served after Monitor, with the same daemons. The
// services listen on the VIP, added after they started, and loopback
// only.
func TestWorkloadTLS(t *testing.T) {
	testenv.RequireTool(t, "swaks", "python3", "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb, cl := startOnVIP(t, ctx)
	w := tb.w
	ca := filepath.Join(t.TempDir(), "ca.pem")
	testenv.WriteFile(t, ca, tb.caCert, 0o644)
	for _, f := range []string{tlsKey, tlsChain} {
		st, err := os.Stat(filepath.Join(w.rootfs(), f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s in the container: %v, %v; want mode 0600", f, st.Mode(), err)
		}
	}
	if st, err := os.Stat(filepath.Join(w.rootfs(), filepath.Dir(tlsKey))); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want mode 0700", filepath.Dir(tlsKey), st.Mode(), err)
	}

	client := func(name string, args ...string) (string, error) {
		out, err := tb.n.Cmd(ctx, cl, name, args...).CombinedOutput()
		return string(out), err
	}
	swaks := func(port string, args ...string) (string, error) {
		return client("swaks", append([]string{"--server", tlsVIP, "--port", port, "--timeout", "60"}, args...)...)
	}
	alice := []string{"--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw"}
	id587, id465 := "<587."+fmt.Sprint(time.Now().UnixNano())+"@client.test>", "<465."+fmt.Sprint(time.Now().UnixNano())+"@client.test>"
	mustSend := func(what string, port string, args ...string) {
		t.Helper()
		out, err := swaks(port, args...)
		if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued") {
			t.Fatalf("%s: swaks = %v\n%s\n%s", what, err, out, readLog(w))
		}
	}
	mustRefuse := func(what, want string, port string, args ...string) {
		t.Helper()
		out, err := swaks(port, args...)
		if err == nil || strings.Contains(out, "Ok: queued") || !strings.Contains(out, want) {
			t.Errorf("%s: swaks = %v, want a refusal with %q\n%s", what, err, want, out)
		}
	}
	mustSend("587 STARTTLS + AUTH", "587", append([]string{"--tls", "--from", "alice@example.test", "--to", "bob@example.test",
		"--header", "Subject: via 587", "--header", "Message-Id: " + id587}, alice...)...)
	mustSend("465 TLS + AUTH", "465", append([]string{"--tls-on-connect", "--from", "alice@example.test", "--to", "bob@example.test",
		"--header", "Subject: via 465", "--header", "Message-Id: " + id465}, alice...)...)
	// An authenticated user may relay to another domain (it is queued;
	// there is no internet here to deliver it to).
	mustSend("587 to another domain, authenticated", "587", append([]string{"--tls", "--from", "alice@example.test", "--to", "someone@example.org"}, alice...)...)
	mustRefuse("25 to another domain without AUTH (open relay)", "Relay access denied", "25", "--from", "x@example.org", "--to", "someone@example.org")
	mustRefuse("25 STARTTLS to another domain without AUTH (open relay)", "Relay access denied", "25", "--tls", "--from", "x@example.org", "--to", "someone@example.org")
	mustRefuse("587 without AUTH", "Access denied", "587", "--tls", "--from", "x@example.org", "--to", "bob@example.test")
	mustRefuse("587 AUTH without STARTTLS", "STARTTLS", "587", append([]string{"--from", "alice@example.test", "--to", "bob@example.test"}, alice...)...)
	mustRefuse("25 AUTH (only on the submission ports)", "auth", "25", append([]string{"--tls", "--from", "alice@example.test", "--to", "someone@example.org"}, alice...)...)
	mustRefuse("587 as another user's sender", "not owned by user alice@example.test", "587", append([]string{"--tls", "--from", "bob@example.test", "--to", "bob@example.test"}, alice...)...)
	mustRefuse("587 wrong password", "535", "587", "--tls", "--from", "alice@example.test", "--to", "bob@example.test", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "wrong")
	if log := fullLog(w); strings.Contains(log, "alice-pw") {
		t.Errorf("the mail log holds a password:\n%s", log)
	}
	// Inbound mail on 25 without TLS still arrives (opportunistic TLS).
	mustSend("25 inbound without TLS", "25", "--from", "x@example.org", "--to", "bob@example.test")

	waitMessages(t, w, ctx, "bob@example.test", "bob-pw", []string{id587, id465})
	out, err := client("python3", "testdata/imap_client.py", tlsVIP, w.Hostname(), ca, "bob@example.test", "bob-pw", id587)
	if err != nil || !strings.Contains(out, "993 IMAPS LOGIN ok, fetched: Subject: via 587") {
		t.Errorf("imap_client.py = %v\n%s", err, out)
	}
	t.Logf("imap_client.py:\n%s", out)

	leaf := func() []byte {
		b, _ := pem.Decode(tb.site.TLS.Chain)
		return pem.EncodeToMemory(b)
	}
	for _, c := range []struct{ port, starttls string }{{"25", "smtp"}, {"587", "smtp"}, {"465", ""}, {"143", "imap"}, {"993", ""}} {
		checkServed(t, ctx, tb, cl, ca, c.port, c.starttls, leaf())
	}

	// Only the VIP and loopback are served, not the node's own address.
	for _, port := range []string{"25", "587", "465", "143", "993", "110", "995"} {
		err := tb.n.Do(cl, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(tlsOther, port), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("port %s answers on %s, the node's own address; want only the VIP", port, tlsOther)
		}
	}
	// POP3 is off by default.
	if err := tb.n.Do(cl, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(tlsVIP, "110"), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Error("POP3 (110) answers with the pop3 setting off")
	}

	// A new certificate is served once Monitor has seen it, by the same
	// daemons.
	before, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := mailtls.Issue(tb.caCert, tb.caKey, []string{w.Hostname(), "imap.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	tb.setSite(Site{TLS: pair})
	if err := w.Monitor(ctx); err != nil {
		t.Fatalf("Monitor after the certificate changed: %v\n%s", err, readLog(w))
	}
	for _, c := range []struct{ port, starttls string }{{"587", "smtp"}, {"993", ""}} {
		checkServed(t, ctx, tb, cl, ca, c.port, c.starttls, leaf())
	}
	after, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before.Services) != fmt.Sprint(after.Services) {
		t.Errorf("services before the new certificate %+v, after %+v: want the same processes (a reload)", before.Services, after.Services)
	}
	// Settings that cannot be read leave the service as it is.
	w.Site = func(context.Context) (Site, error) { return Site{}, errors.New("no quorum") }
	if err := w.Monitor(ctx); err != nil {
		t.Errorf("Monitor while the settings cannot be read = %v, want nil (the running service is fine)", err)
	}
	checkServed(t, ctx, tb, cl, ca, "993", "", leaf())
}

// startOnVIP starts a workload that listens on tlsVIP, reached from the
// namespace it returns (tlsClient). The mail starts before the VIP is
// added, as in the cluster (ip_nonlocal_bind, set in the namespace the
// workload starts in).
func startOnVIP(t *testing.T, ctx context.Context) (*testbed, string) {
	t.Helper()
	tb := newTestbed(t, map[string]string{ParamListen: tlsVIP})
	cl := tb.n.Host("client")
	tb.n.Link(tb.ns, "eth0", tlsOther+"/24", cl, "eth0", tlsClient+"/24")
	if err := tb.in(func() error { return tb.w.Start(ctx) }); err != nil {
		t.Fatalf("Start: %v\n%s", err, readLog(tb.w))
	}
	tb.n.Run(tb.ns, "ip", "addr", "add", tlsVIP+"/24", "dev", "eth0")
	return tb, cl
}

// checkServed connects with openssl s_client from the client's namespace
// until the chain verifies against ca for the service name and its leaf
// is want (a reload takes a moment).
func checkServed(t *testing.T, ctx context.Context, tb *testbed, cl, ca, port, starttls string, want []byte) {
	t.Helper()
	args := []string{"s_client", "-connect", net.JoinHostPort(tlsVIP, port), "-servername", tb.w.Hostname(),
		"-verify_hostname", tb.w.Hostname(), "-CAfile", ca, "-verify_return_error", "-showcerts"}
	if starttls != "" {
		args = append(args, "-starttls", starttls)
	}
	var out []byte
	for deadline := time.Now().Add(time.Minute); ; {
		cmd := tb.n.Cmd(ctx, cl, "openssl", args...)
		cmd.Stdin = strings.NewReader("")
		var err error
		out, err = cmd.CombinedOutput()
		var blk *pem.Block
		if i := bytes.Index(out, []byte("-----BEGIN CERTIFICATE-----")); i >= 0 {
			blk, _ = pem.Decode(out[i:])
		}
		if err == nil && bytes.Contains(out, []byte("Verify return code: 0 (ok)")) && blk != nil && bytes.Equal(pem.EncodeToMemory(blk), want) &&
			bytes.Contains(out, []byte("CN = tandem mail CA test")) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("port %s: openssl s_client = %v; want the chain verified for %s with the expected leaf\n%s", port, err, tb.w.Hostname(), out)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
