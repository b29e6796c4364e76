package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/services/mail/mailprobe"
	"tandem/services/mail/mailtls"
)

// TestWorkloadSettings: the site settings change the running service
// with a reload: a client network allowed to relay relays (and before,
// it did not), outbound mail goes to the smarthost (Debian's aiosmtpd in
// the client's namespace, taking mail only after a login over TLS) logged
// in with the smarthost's user and password, whose table is root's only
// and gone once the password is removed; a message over the size limit
// is refused, POP3 opens on the VIP.
func TestWorkloadSettings(t *testing.T) {
	testenv.RequireTool(t, "swaks", "/usr/bin/python3")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb, cl := startOnVIP(t, ctx)
	w := tb.w
	apply := func(name, value string) {
		t.Helper()
		site := tb.site
		if err := site.Settings.Set(name, value); err != nil {
			t.Fatal(err)
		}
		tb.setSite(site)
		if err := w.Monitor(ctx); err != nil {
			t.Fatalf("Monitor after %s = %s: %v\n%s", name, value, err, readLog(w))
		}
	}
	relay := func(id string) (string, error) {
		out, err := tb.n.Cmd(ctx, cl, "swaks", "--server", tlsVIP, "--port", "25", "--timeout", "60",
			"--from", "app@client.test", "--to", "someone@example.net", "--header", "Message-Id: "+id).CombinedOutput()
		return string(out), err
	}
	if out, err := relay("<before@client.test>"); err == nil || !strings.Contains(out, "Relay access denied") {
		t.Fatalf("relaying from the client before relay_networks: %v\n%s", err, out)
	}

	// The smarthost, as an ISP's relay is: mail only after a login, a
	// login only after STARTTLS (testdata/smtp_auth_sink.py).
	dir := t.TempDir()
	sinkTLS, err := mailtls.Issue(tb.caCert, tb.caKey, []string{"relay.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	testenv.WriteFile(t, cert, sinkTLS.Chain, 0o600)
	testenv.WriteFile(t, key, sinkTLS.Key, 0o600)
	sink := filepath.Join(dir, "mail")
	if err := os.Mkdir(sink, 0o700); err != nil {
		t.Fatal(err)
	}
	sinkLog, err := os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer sinkLog.Close()
	printed := func() string { b, _ := os.ReadFile(sinkLog.Name()); return string(b) }
	smtpd := tb.n.Cmd(ctx, cl, "/usr/bin/python3", "-u", "testdata/smtp_auth_sink.py", tlsClient, "2525", cert, key, "relay@example.net", "relay pw:1", sink)
	smtpd.Stdout, smtpd.Stderr = sinkLog, sinkLog
	tb.n.Start(smtpd)
	waitListening(t, tb, cl, tlsClient+":2525")

	apply(SetRelayNetworks, "10.58.0.0/24")
	apply(SetSmarthostUser, "relay@example.net")
	apply(SetSmarthostPassword, "relay pw:1")
	apply(SetSmarthost, tlsClient+":2525")
	passwords := filepath.Join(w.rootfs(), smarthostPasswords)
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{passwords, 0o600}, {filepath.Dir(passwords), os.ModeDir | 0o700}} {
		if st, err := os.Stat(c.path); err != nil || st.Mode() != c.mode || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: %v, %v; want %v, root's", c.path, st.Mode(), err, c.mode)
		}
	}
	// Postfix's smtpd processes reload as they are replaced: retry.
	var sent string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		id := fmt.Sprintf("<relayed.%d@client.test>", time.Now().UnixNano())
		o, err := relay(id)
		if err == nil && strings.Contains(o, "250 2.0.0 Ok: queued") {
			sent = id
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaying from a relay network: %v\n%s\n%s", err, o, readLog(w))
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		ms, _ := filepath.Glob(filepath.Join(sink, "*.eml"))
		if slices.ContainsFunc(ms, func(m string) bool { b, _ := os.ReadFile(m); return bytes.Contains(b, []byte(sent)) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the smarthost never got %s; it printed:\n%s\nmail log:\n%s", sent, printed(), readLog(w))
		}
	}
	if out := printed(); !regexp.MustCompile(`auth (PLAIN|LOGIN) relay@example.net: ok`).MatchString(out) || strings.Contains(out, "relay pw") {
		t.Errorf("the smarthost's log = %q, want a login as relay@example.net (and no password)", out)
	}
	if strings.Contains(fullLog(w), "relay pw") {
		t.Error("the mail log shows the smarthost's password")
	}
	apply(SetSmarthostPassword, "")
	if _, err := os.Stat(passwords); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the login's table after the password was removed: %v, want it gone", err)
	}

	apply(SetMessageSize, "1")
	big := mailprobe.Message{From: "x@example.net", To: "alice@example.test", Subject: "big", MessageID: "<big@x>", Body: strings.Repeat(strings.Repeat("x", 76)+"\n", 2<<20/77)}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		ok, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", big)
		if !ok && err != nil && strings.Contains(err.Error(), "552") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 MiB with a 1 MiB limit: %v, %v; want a 552 refusal", ok, err)
		}
	}

	apply(SetPOP3, "true")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		var greeting string
		err := tb.n.Do(cl, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(tlsVIP, "110"), 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 64)
			n, err := c.Read(b)
			greeting = string(b[:n])
			return err
		})
		if err == nil && strings.HasPrefix(greeting, "+OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POP3 on the VIP after pop3 = true: %v %q\n%s", err, greeting, readLog(w))
		}
	}
}

// waitListening waits until addr takes TCP connections from ns.
func waitListening(t *testing.T, tb *testbed, ns, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := tb.n.Do(ns, func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
	}
}
