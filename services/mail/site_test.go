package mail

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/internal/container"
	"tandem/services/mail/mailprobe"
)

// TestWorkloadSite: users, aliases and domains come from the site and
// change while the workload runs, without a restart: a second domain's
// user gets mail, an alias delivers to each of its users, a quota shows
// over IMAP and stops a message too big for it, a user added later logs
// in and one deleted no longer does, a wrong password is refused and not
// logged.
func TestWorkloadSite(t *testing.T) {
	tb := newTestbed(t, nil)
	w := tb.w
	carol := testUser(t, "carol@example.org", "carol-pw")
	bob := testUser(t, "bob@example.test", "bob-pw")
	bob.QuotaMiB = 50
	site := tb.site
	site.Domains = []string{"example.org"}
	site.Users = []User{site.Users[0], bob, carol}
	site.Aliases = []Alias{{From: "team@example.org", To: []string{"alice@example.test", "carol@example.org"}}}
	tb.setSite(site)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := tb.in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("Start: %v\n%s", err, readLog(w))
	}
	ids := sendN(t, w, ctx, "team@example.org", 2)
	waitMessages(t, w, ctx, "alice@example.test", "alice-pw", ids)
	waitMessages(t, w, ctx, "carol@example.org", "carol-pw", ids)
	if _, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", mailprobe.Message{From: "x@example.net", To: "nobody@example.org", Subject: "s", MessageID: "<n@x>", Body: "b"}); err == nil {
		t.Error("mail to an unknown user of the second domain was acknowledged")
	}
	c, err := mailprobe.Login(ctx, w.Dial, "127.0.0.1:143", "bob@example.test", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	quota, err := c.Command("GETQUOTAROOT INBOX")
	c.Logout()
	if err != nil || !slices.ContainsFunc(quota, func(l string) bool { return strings.Contains(l, "(STORAGE 0 51200)") }) {
		t.Errorf("bob's GETQUOTAROOT = %q, %v; want STORAGE 0 51200 (50 MiB)", quota, err)
	}

	// A wrong password: refused, and the log does not hold it.
	if _, err := mailprobe.Login(ctx, w.Dial, "127.0.0.1:143", "alice@example.test", "not-alices-password"); err == nil {
		t.Error("a wrong password logged in")
	}

	before, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	dave := testUser(t, "dave@example.test", "dave-pw")
	dave.QuotaMiB = 1
	site.Users = []User{site.Users[0], dave, carol} // bob deleted, dave added
	tb.setSite(site)
	if err := w.Monitor(ctx); err != nil {
		t.Fatalf("Monitor after the users changed: %v\n%s", err, readLog(w))
	}
	ids = sendN(t, w, ctx, "dave@example.test", 1)
	waitMessages(t, w, ctx, "dave@example.test", "dave-pw", ids)
	// Over dave's 1 MiB quota: Postfix takes it, Dovecot's LMTP refuses
	// it, it never reaches the mailbox.
	big := mailprobe.Message{From: "x@example.net", To: "dave@example.test", Subject: "big", MessageID: "<big@x>", Body: strings.Repeat(strings.Repeat("x", 76)+"\n", 2<<20/77)}
	if ok, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", big); !ok || err != nil {
		t.Fatalf("send 2 MiB to dave: %v, %v", ok, err)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(fullLog(w), "Quota exceeded"); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no quota refusal in the log for 2 MiB to a 1 MiB quota:\n%s", readLog(w))
		}
	}
	if got, err := mailprobe.Inbox(ctx, w.Dial, "127.0.0.1:143", "dave@example.test", "dave-pw"); err != nil || slices.Contains(got, "<big@x>") {
		t.Errorf("dave's INBOX = %v, %v; want no message over the quota", got, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, err := mailprobe.Login(ctx, w.Dial, "127.0.0.1:143", "bob@example.test", "bob-pw")
		_, sendErr := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", mailprobe.Message{From: "x@example.net", To: "bob@example.test", Subject: "s", MessageID: fmt.Sprintf("<%d@x>", time.Now().UnixNano()), Body: "b"})
		if err != nil && sendErr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob, deleted: login %v, mail to him %v; want both refused", err, sendErr)
		}
	}
	after, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before.Services) != fmt.Sprint(after.Services) {
		t.Errorf("services before the user change %+v, after %+v: want the same processes", before.Services, after.Services)
	}
	if log := fullLog(w); strings.Contains(log, "not-alices-password") || !strings.Contains(log, "alice@example.test") {
		t.Errorf("the mail log holds the wrong password, or not the failed login at all:\n%s", log)
	}
}
