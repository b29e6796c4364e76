package mail

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/services/mail/mailprobe"
)

// TestWorkloadSettings: the site settings change the running service
// with a reload: a client network allowed to relay relays (and before,
// it did not), outbound mail goes to the smarthost (Python's smtpd in
// the client's namespace stands for it), a message over the size limit is
// refused, POP3 opens on the VIP.
func TestWorkloadSettings(t *testing.T) {
	testenv.RequireTool(t, "swaks", "python3")
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

	// The smarthost: Python's smtpd printing what it receives.
	sink := filepath.Join(t.TempDir(), "smarthost.out")
	out, err := os.Create(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	smtpd := tb.n.Cmd(ctx, cl, "python3", "-u", "-W", "ignore::DeprecationWarning", "-m", "smtpd", "-n", "-c", "DebuggingServer", tlsClient+":2525")
	smtpd.Stdout, smtpd.Stderr = out, out
	tb.n.Start(smtpd)
	waitListening(t, tb, cl, tlsClient+":2525")

	apply(SetRelayNetworks, "10.58.0.0/24")
	apply(SetSmarthost, tlsClient+":2525")
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
		b, _ := os.ReadFile(sink)
		if bytes.Contains(b, []byte(sent)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the smarthost never got %s; it printed:\n%s\nmail log:\n%s", sent, b, readLog(w))
		}
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
