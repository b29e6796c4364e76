package dns

import (
	"context"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// transports are the three ways a query reaches the server: the IPv4 UDP
// batch loop, miekg's UDP server (IPv6) and TCP.
var transports = []struct{ name, network string }{{"udp4", "udp"}, {"udp6", "udp"}, {"tcp", "tcp"}}

func (sv serving) addr(transport string) string {
	return map[string]string{"udp4": sv.udp4, "udp6": sv.udp6, "tcp": sv.tcp}[transport]
}

// protocolServer serves the test zone on 127.0.0.1 and [::1], with a
// forwarder it must never use.
func protocolServer(t *testing.T) serving {
	pcs, lns, sv := listenLoopback(t, true)
	s := New(Config{Policy: Policy{Forwarders: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}, Dial: forbidDial(t)}, testZone())
	serve(t, s, pcs, lns)
	return sv
}

// No zone transfers, of the zone or of a name a forwarder would get, over
// UDP or TCP.
func TestZoneTransfersRefused(t *testing.T) {
	sv := protocolServer(t)
	for _, tc := range []struct {
		name string
		q    func() *mdns.Msg
	}{
		{"AXFR of the zone", func() *mdns.Msg { return query("mail.example.org.", mdns.TypeAXFR) }},
		{"AXFR elsewhere", func() *mdns.Msg { return query("example.net.", mdns.TypeAXFR) }},
		{"IXFR of the zone", func() *mdns.Msg {
			return new(mdns.Msg).SetIxfr("mail.example.org.", 1, "ns.mail.example.org.", "hostmaster.mail.example.org.")
		}},
		{"IXFR elsewhere", func() *mdns.Msg {
			return new(mdns.Msg).SetIxfr("example.net.", 1, "ns.example.net.", "hostmaster.example.net.")
		}},
	} {
		for _, tr := range transports {
			t.Run(tc.name+" over "+tr.name, func(t *testing.T) {
				q := tc.q()
				q.RecursionDesired = true
				m := exchange(t, tr.network, sv.addr(tr.name), q)
				if m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 || len(m.Ns) != 0 {
					t.Errorf("%s over %s = %s with %d answers, %d authority; want REFUSED, none", tc.name, tr.name, mdns.RcodeToString[m.Rcode], len(m.Answer), len(m.Ns))
				}
			})
		}
	}
}

// EDNS versions above 0 get BADVERS and the version the server speaks (0);
// version 0 is answered.
func TestEDNSVersion(t *testing.T) {
	sv := protocolServer(t)
	for _, tc := range []struct {
		name    string
		version uint8
		rcode   int
	}{
		{"version 0", 0, mdns.RcodeSuccess},
		{"version 1", 1, mdns.RcodeBadVers},
		{"version 255", 255, mdns.RcodeBadVers},
	} {
		for _, tr := range transports {
			t.Run(tc.name+" over "+tr.name, func(t *testing.T) {
				q := query("mail.mail.example.org.", mdns.TypeA)
				q.SetEdns0(1232, false)
				q.IsEdns0().SetVersion(tc.version)
				m := exchange(t, tr.network, sv.addr(tr.name), q)
				if m.Rcode != tc.rcode {
					t.Errorf("EDNS %s over %s: rcode %s, want %s", tc.name, tr.name, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
				}
				if o := m.IsEdns0(); o == nil || o.Version() != 0 {
					t.Errorf("EDNS %s over %s: answer's OPT %v, want version 0", tc.name, tr.name, o)
				}
				if wantAnswers := tc.rcode == mdns.RcodeSuccess; (len(m.Answer) == 1) != wantAnswers {
					t.Errorf("EDNS %s over %s: %d answers, want %v", tc.name, tr.name, len(m.Answer), map[bool]string{true: "one", false: "none"}[wantAnswers])
				}
			})
		}
	}
}

// Every opcode but QUERY gets the same NOTIMP over each transport.
func TestUnknownOpcodesSameEverywhere(t *testing.T) {
	sv := protocolServer(t)
	for op := 1; op <= 15; op++ {
		t.Run(mdns.OpcodeToString[op], func(t *testing.T) {
			q := query("mail.example.org.", mdns.TypeSOA)
			q.Opcode = op
			var first string
			for _, tr := range transports {
				m := exchange(t, tr.network, sv.addr(tr.name), q)
				if m.Rcode != mdns.RcodeNotImplemented || m.Opcode != op || len(m.Answer) != 0 {
					t.Errorf("opcode %d over %s = %s, opcode %d, %d answers; want NOTIMP, the opcode, none", op, tr.name, mdns.RcodeToString[m.Rcode], m.Opcode, len(m.Answer))
				}
				if first == "" {
					first = m.String()
				} else if got := m.String(); got != first {
					t.Errorf("opcode %d over %s =\n%s\nover udp4 =\n%s\nwant the same", op, tr.name, got, first)
				}
			}
		})
	}
}

// A network of every address in Allow counts only with OpenResolver; other
// networks beside it still do.
func TestOpenResolverNeedsTheSwitch(t *testing.T) {
	world := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("10.0.0.0/8")}
	q := query("mail.mail.example.org.", mdns.TypeA)
	for _, tc := range []struct {
		open bool
		from string
		want int
	}{
		{false, "198.51.100.7", mdns.RcodeRefused},
		{false, "2001:db8::7", mdns.RcodeRefused},
		{false, "10.1.2.3", mdns.RcodeSuccess},
		{true, "198.51.100.7", mdns.RcodeSuccess},
		{true, "2001:db8::7", mdns.RcodeSuccess},
	} {
		s := New(Config{Policy: Policy{Allow: world, OpenResolver: tc.open}}, testZone())
		m := s.Handle(context.Background(), netip.MustParseAddr(tc.from), false, q)
		if m.Rcode != tc.want {
			t.Errorf("allow %v, open_resolver %v: Handle from %s = %s, want %s", world, tc.open, tc.from, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.want])
		}
	}
}
