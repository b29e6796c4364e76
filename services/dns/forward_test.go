package dns

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// With MaxUpstream queries upstream, the next one that needs an upstream
// is answered SERVFAIL at once, over each path a query takes (the handler,
// the IPv4 UDP batch loop, TCP); once they are back, forwarding goes on.
func TestUpstreamQueriesBounded(t *testing.T) {
	for _, via := range []string{"handler", "udp", "tcp"} {
		t.Run(via, func(t *testing.T) {
			u := startUpstream(t, true)
			s := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{u.addr}}, MaxUpstream: 2, Timeout: slow}, testZone())
			var sv serving
			if via != "handler" {
				pcs, lns, addrs := listenLoopback(t, false)
				serve(t, s, pcs, lns)
				sv = addrs
			}
			ask := func(name string) (*mdns.Msg, error) {
				q := query(name, mdns.TypeA)
				switch via {
				case "udp":
					return tryExchange("udp", sv.udp4, q)
				case "tcp":
					return tryExchange("tcp", sv.tcp, q)
				}
				return s.Handle(context.Background(), local, true, q), nil
			}
			type result struct {
				m   *mdns.Msg
				err error
			}
			held := make(chan result, 2)
			for _, name := range []string{"a.example.net.", "b.example.net."} {
				go func() {
					m, err := ask(name)
					held <- result{m, err}
				}()
			}
			u.wait(t)
			u.wait(t)
			m, err := ask("c.example.net.")
			if err != nil || m.Rcode != mdns.RcodeServerFailure || len(m.Answer) != 0 {
				t.Errorf("third query with 2 upstream (max 2) = %v, %v; want SERVFAIL without answers", m, err)
			}
			if got := s.Stats().Busy; got != 1 {
				t.Errorf("Stats().Busy = %d, want 1", got)
			}
			u.open()
			for range 2 {
				if r := <-held; r.err != nil || r.m.Rcode != mdns.RcodeSuccess || len(r.m.Answer) != 1 {
					t.Errorf("held query once the upstream answers = %v, %v; want one A", r.m, r.err)
				}
			}
			if m, err := ask("d.example.net."); err != nil || m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
				t.Errorf("query after the others came back = %v, %v; want one A", m, err)
			}
			if q := u.wait(t); q.Question[0].Name != "d.example.net." || len(u.queries) != 0 {
				t.Errorf("upstream got %s next and %d more, want d.example.net. only (c.example.net. never went up)", q.Question[0].Name, len(u.queries))
			}
		})
	}
}

// The query that goes upstream carries the client's question, DO and CD
// bits and the stamps, this server's added; nothing else of the client's.
func TestUpstreamQueryIsRebuilt(t *testing.T) {
	u := startUpstream(t, false)
	s := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{u.addr}}, Timeout: slow}, testZone())
	q := query("www.example.net.", mdns.TypeAAAA)
	q.CheckingDisabled = true
	q.SetEdns0(4096, true)
	other := bytes.Repeat([]byte{7}, stampLen)
	q.IsEdns0().Option = append(q.IsEdns0().Option,
		&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&mdns.EDNS0_LOCAL{Code: stampOption, Data: other})
	q.Extra = append(q.Extra, &mdns.TXT{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET}, Txt: []string{"client's"}})
	if m := s.Handle(context.Background(), local, false, q); m.Rcode != mdns.RcodeSuccess {
		t.Fatalf("Handle(%v) = %v, want NOERROR", q.Question, m)
	}
	got := u.wait(t)
	if len(got.Question) != 1 || got.Question[0] != q.Question[0] || !got.RecursionDesired || !got.CheckingDisabled {
		t.Errorf("upstream query = %v, want the question %v with RD and CD", got, q.Question[0])
	}
	o := got.IsEdns0()
	if o == nil || !o.Do() || len(got.Extra) != 1 {
		t.Fatalf("upstream query's additional section = %v, want only an OPT with DO", got.Extra)
	}
	if len(o.Option) != 1 || o.Option[0].Option() != stampOption {
		t.Fatalf("upstream query's EDNS options = %v, want only the stamps", o.Option)
	}
	if want := append(other, s.id[:]...); !bytes.Equal(stamps(got), want) {
		t.Errorf("upstream query's stamps = %x, want %x (the client's, then this server's)", stamps(got), want)
	}
}
