package e2e

import (
	"context"
	"fmt"
	"net/smtp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/lab"
	"tandem/services/mail/mailprobe"
)

// submitSessions and submitFor shape the submission figure: that many
// clients, each on one TLS session, submitting back to back for that long;
// submitRounds is how many replicated and cut-off phases alternate.
const (
	submitSessions = 4
	submitFor      = 30 * time.Second
	submitRounds   = 3
)

// mailFigures measures issue 13's figures on the owner: messages
// accepted per second on the VIP over submission (587, STARTTLS and
// AUTH), replicated and with the peer cut off (DRBD disconnected: the
// same workload, the same guest, its own disk only), in alternating
// phases, as the ratio of their medians in one run; and the IMAPS (993)
// login latency. Each cut-off phase begins once DRBD has noticed the cut
// and the group stayed; each replicated one once the peer has resynced,
// so neither measures the transition. The peer is healed and the volume
// resynced before it returns.
func (m *mailLab) mailFigures(b *testing.B, ctx context.Context) {
	owner := m.waitServing(ctx, "")
	peer := "data-a"
	if owner == peer {
		peer = "data-b"
	}
	var lat []float64
	for range 20 {
		t := time.Now()
		c, err := mailprobe.Login(ctx, mailprobe.TLSDial(m.l.Dial, m.tlsConfig()), vipIMAPS, m.seed.MailUser, m.seed.MailPassword)
		if err != nil {
			b.Fatalf("IMAPS login: %v", err)
		}
		lat = append(lat, time.Since(t).Seconds()*1000)
		c.Logout()
	}
	slices.Sort(lat)
	b.Logf("IMAPS (993) login, TLS handshake included, on %s: median %.0f ms of %d (%.0f to %.0f)", owner, lat[len(lat)/2], len(lat), lat[0], lat[len(lat)-1])
	b.ReportMetric(lat[len(lat)/2], "ms-imaps-login")

	var repl, alone []float64
	for range submitRounds {
		repl = append(repl, m.submitRate(b, ctx))
		if err := m.l.Partition(peer); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Second) // DRBD notices (ping-timeout) and goes on alone
		if o := m.waitServing(ctx, ""); o != owner {
			b.Fatalf("the group moved to %s when %s was cut off", o, peer)
		}
		alone = append(alone, m.submitRate(b, ctx))
		if err := m.l.Heal(); err != nil {
			b.Fatal(err)
		}
		m.waitReplicated(ctx)
	}
	r, a := median(repl), median(alone)
	b.Logf("submission (587, STARTTLS + AUTH, %d sessions, %v a phase, %d rounds) on %s: replicated %s msg/s (median %.1f), peer cut off (its own disk only) %s msg/s (median %.1f), ratio of the medians %.2f",
		submitSessions, submitFor, submitRounds, owner, rates(repl), r, rates(alone), a, r/a)
	b.ReportMetric(r, "msg/s-submission-replicated")
	b.ReportMetric(a, "msg/s-submission-alone")
	b.ReportMetric(r/a, "submission-ratio")
}

// median is the middle of v (the upper one of an even count).
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// rates prints v in the order measured, one decimal each.
func rates(v []float64) string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(out, ", ")
}

// submitRate submits messages to the mail user from submitSessions
// sessions for submitFor and returns the accepted ones per second; the
// messages join those checkAllReadable looks for.
func (m *mailLab) submitRate(b *testing.B, ctx context.Context) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, submitSessions)
	start := time.Now()
	for s := range submitSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.submitLoop(ctx, s, start.Add(submitFor), &n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("submission: %v", err)
	}
	return float64(n.Load()) / time.Since(start).Seconds()
}

// submitLoop is one client: STARTTLS, AUTH PLAIN, then messages until
// end.
func (m *mailLab) submitLoop(ctx context.Context, session int, end time.Time, n *atomic.Int64) error {
	conn, err := m.l.Dial(ctx, "tcp", lab.VIP.String()+":587")
	if err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, mailName)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.StartTLS(m.tlsConfig()); err != nil {
		return err
	}
	if err := c.Auth(smtp.PlainAuth("", m.seed.MailUser, m.seed.MailPassword, mailName)); err != nil {
		return err
	}
	for i := 0; time.Now().Before(end); i++ {
		id := fmt.Sprintf("<submit-%d-%d-%d@lab-host>", time.Now().UnixNano(), session, i)
		if err := c.Mail(m.seed.MailUser); err != nil {
			return err
		}
		if err := c.Rcpt(m.seed.MailUser); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: submission %d\r\nMessage-ID: %s\r\n\r\n%s\r\n", m.seed.MailUser, m.seed.MailUser, i, id, strings.Repeat("tandem submission benchmark ", 40))
		if err := w.Close(); err != nil {
			return err
		}
		n.Add(1)
		m.mu.Lock()
		m.acked = append(m.acked, id)
		m.mu.Unlock()
	}
	return c.Quit()
}
