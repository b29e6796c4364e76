package dns

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// step is one response in a rate limit scenario: the clock moves by
// advance, then a response to from gets want.
type step struct {
	advance time.Duration
	from    string
	want    verdict
}

func runSteps(t *testing.T, l *limiter, clk *fakeClock, steps []step) {
	t.Helper()
	for i, st := range steps {
		clk.advance(st.advance)
		if got := l.check(netip.MustParseAddr(st.from)); got != st.want {
			t.Errorf("step %d (+%v): check(%s) = %s, want %s", i, st.advance, st.from, got, st.want)
		}
	}
}

// repeat is n steps of one source at the same time.
func repeat(n int, from string, want verdict) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = step{from: from, want: want}
	}
	return out
}

func TestLimiter(t *testing.T) {
	third := time.Second / 3
	for _, tc := range []struct {
		name  string
		rl    RateLimit
		steps [][]step
	}{
		{"burst, slip 2, refill", RateLimit{PerSecond: 3, Slip: 2}, [][]step{
			repeat(3, "10.0.0.1", pass),
			{{from: "10.0.0.1", want: drop}, {from: "10.0.0.1", want: slip}, {from: "10.0.0.1", want: drop}, {from: "10.0.0.1", want: slip}},
			{{from: "10.0.0.2", want: pass}}, // its own bucket
			{{advance: third, from: "10.0.0.1", want: pass}, {from: "10.0.0.1", want: drop}, {from: "10.0.0.1", want: slip}},
			{{advance: time.Second, from: "10.0.0.1", want: pass}},
			repeat(2, "10.0.0.1", pass), // a second refills the whole burst, no more
			{{from: "10.0.0.1", want: drop}},
		}},
		{"IPv6 by /56", RateLimit{PerSecond: 2, Slip: 2}, [][]step{
			{{from: "2001:db8:0:1::1", want: pass}, {from: "2001:db8:0:ff::2", want: pass}, {from: "2001:db8:0:1::3", want: drop}},
			{{from: "2001:db8:0:100::1", want: pass}}, // the next /56
		}},
		{"loopback never", RateLimit{PerSecond: 1, Slip: 2}, [][]step{
			repeat(50, "127.0.0.1", pass), repeat(50, "127.9.9.9", pass), repeat(50, "::1", pass),
		}},
		{"slip 1 truncates every dropped", RateLimit{PerSecond: 1, Slip: 1}, [][]step{
			{{from: "10.0.0.1", want: pass}}, repeat(5, "10.0.0.1", slip),
		}},
		{"slip 0 drops all", RateLimit{PerSecond: 1, Slip: 0}, [][]step{
			{{from: "10.0.0.1", want: pass}}, repeat(5, "10.0.0.1", drop),
		}},
		{"off", RateLimit{}, [][]step{repeat(1000, "10.0.0.1", pass)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			l := newLimiter(tc.rl, clk.now)
			var steps []step
			for _, s := range tc.steps {
				steps = append(steps, s...)
			}
			runSteps(t, l, clk, steps)
		})
	}
}

// The networks tracked never pass MaxSources; idle ones go first, so a
// busy network keeps its state.
func TestLimiterBoundsSources(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(RateLimit{PerSecond: 3, Slip: 2, MaxSources: 4}, clk.now)
	runSteps(t, l, clk, []step{{from: "10.0.0.4", want: pass}}) // idle a second later
	clk.advance(time.Second)
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		runSteps(t, l, clk, repeat(3, a, pass)) // busy: buckets empty
	}
	runSteps(t, l, clk, []step{{from: "10.0.0.5", want: pass}})
	if got := l.tracked(); got != 4 {
		t.Errorf("tracked() = %d, want 4 (MaxSources)", got)
	}
	// 10.0.0.4 was forgotten, not a busy one.
	runSteps(t, l, clk, []step{{from: "10.0.0.1", want: drop}, {from: "10.0.0.2", want: drop}, {from: "10.0.0.3", want: drop}})

	for i := range 1000 {
		l.check(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
		if got := l.tracked(); got > 4 {
			t.Fatalf("after %d new sources: tracked() = %d, want <= 4", i+1, got)
		}
	}
}

// The handler applies the limit to UDP from other hosts only, refusals
// included: past the burst nothing or an empty TC=1 answer; TCP and
// loopback are answered in full.
func TestHandleRateLimited(t *testing.T) {
	clk := newFakeClock()
	s := New(Config{
		Policy:    Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		RateLimit: RateLimit{PerSecond: 2, Slip: 2},
		Now:       clk.now,
	}, testZone())
	client := netip.MustParseAddr("10.1.1.1")
	ask := func(from netip.Addr, udp bool) string {
		m := s.Handle(context.Background(), from, udp, query("mail.mail.example.org.", mdns.TypeA))
		switch {
		case m == nil:
			return "none"
		case m.Truncated && len(m.Answer) == 0:
			return "TC"
		case !m.Truncated && len(m.Answer) == 1:
			return "answer"
		}
		return fmt.Sprintf("unexpected %v", m)
	}
	for i, want := range []string{"answer", "answer", "none", "TC", "none", "TC"} {
		if got := ask(client, true); got != want {
			t.Errorf("UDP query %d from %s = %s, want %s", i, client, got, want)
		}
	}
	refused := netip.MustParseAddr("192.168.1.1") // not allowed: REFUSED, limited the same
	for i, want := range []string{"REFUSED", "REFUSED", "none", "TC"} {
		m := s.Handle(context.Background(), refused, true, query("mail.mail.example.org.", mdns.TypeA))
		got := "none"
		switch {
		case m != nil && m.Truncated && len(m.Answer) == 0:
			got = "TC"
		case m != nil:
			got = mdns.RcodeToString[m.Rcode]
		}
		if got != want {
			t.Errorf("UDP query %d from %s (not allowed) = %s, want %s", i, refused, got, want)
		}
	}
	if got := ask(client, false); got != "answer" {
		t.Errorf("TCP query from %s past its UDP limit = %s, want answer", client, got)
	}
	for range 10 {
		if got := ask(local, true); got != "answer" {
			t.Fatalf("UDP query from loopback = %s, want answer", got)
		}
	}
	clk.advance(time.Second / 2)
	if got := ask(client, true); got != "answer" {
		t.Errorf("UDP query from %s half a second later = %s, want answer", client, got)
	}
	if got := s.Stats().Limited; got != 6 {
		t.Errorf("Stats().Limited = %d, want 6", got)
	}
}
