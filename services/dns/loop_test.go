package dns

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// A server that forwards to itself answers SERVFAIL after one turn,
// whichever way the client asked: the query that comes back carries its
// stamp.
func TestSelfForwardingStopsAfterOneTurn(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			pcs, lns, sv := listenLoopback(t, false)
			self := netip.MustParseAddrPort(sv.udp4)
			s := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{self}}, Timeout: slow}, testZone())
			serve(t, s, pcs, lns)
			addr := sv.udp4
			if network == "tcp" {
				addr = sv.tcp
			}
			m := exchange(t, network, addr, query("www.example.net.", mdns.TypeA))
			if m.Rcode != mdns.RcodeServerFailure {
				t.Errorf("query to a server forwarding to itself = %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
			}
			if st := s.Stats(); st.Served != 2 || st.Loops != 1 {
				t.Errorf("Stats() = %+v, want 2 served (the client's, its one turn) and 1 loop", st)
			}
		})
	}
}

// Two servers that forward to each other: the first sees its own stamp
// when the query comes back through the second.
func TestLoopThroughAnotherServer(t *testing.T) {
	pcsA, lnsA, a := listenLoopback(t, false)
	pcsB, lnsB, b := listenLoopback(t, false)
	sa := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{netip.MustParseAddrPort(b.udp4)}}, Timeout: slow}, testZone())
	sb := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{netip.MustParseAddrPort(a.udp4)}}, Timeout: slow}, testZone())
	serve(t, sa, pcsA, lnsA)
	serve(t, sb, pcsB, lnsB)
	m := exchange(t, "udp", a.udp4, query("www.example.net.", mdns.TypeA))
	if m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("query into a two-server loop = %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	if sta, stb := sa.Stats(), sb.Stats(); sta.Served != 2 || sta.Loops != 1 || stb.Served != 1 || stb.Loops != 0 {
		t.Errorf("Stats() = %+v and %+v, want A: 2 served, 1 loop; B: 1 served, no loop", sta, stb)
	}
}

// Stamps that forbid forwarding: this server's own, as many as maxHops of
// others', and a malformed one. A query with fewer others' is forwarded
// (TestUpstreamQueryIsRebuilt).
func TestStampsRefused(t *testing.T) {
	s := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}, Dial: forbidDial(t)}, testZone())
	other := bytes.Repeat([]byte{9}, stampLen)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"own", s.id[:]},
		{"own after another's", append(other, s.id[:]...)},
		{"max hops", bytes.Repeat(other, maxHops)},
		{"malformed", []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := query("www.example.net.", mdns.TypeA)
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, &mdns.EDNS0_LOCAL{Code: stampOption, Data: tc.data})
			before := s.Stats().Loops
			m := s.Handle(context.Background(), local, true, q)
			if m == nil || m.Rcode != mdns.RcodeServerFailure {
				t.Errorf("Handle(stamps %x) = %v, want SERVFAIL", tc.data, m)
			}
			if got := s.Stats().Loops; got != before+1 {
				t.Errorf("Stats().Loops = %d, want %d", got, before+1)
			}
		})
	}
}
