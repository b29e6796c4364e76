package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	mdns "github.com/miekg/dns"

	"tandem/internal/golden"
)

// handleRaw is what the UDP server does with one datagram; a query it
// would forward is checked and gets no answer here.
func handleRaw(t testing.TB, s *Server, from netip.Addr, raw []byte) []byte {
	out, fwd := s.handlePacket(raw, from)
	if fwd != nil {
		if out != nil {
			t.Fatalf("query %x both answered and forwarded", raw)
		}
		checkForward(t, s, raw, fwd)
		return nil
	}
	if out != nil {
		var m mdns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer to %x does not unpack: %v", raw, err)
		}
	}
	return out
}

// checkForward holds for every query the server would forward: a plain
// query of one question outside the zone, and once stamped (as it leaves),
// one the server would refuse to forward again.
func checkForward(t testing.TB, s *Server, raw []byte, r *mdns.Msg) {
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 || ednsVersion(r) > 0 || isTransfer(r) {
		t.Fatalf("query %x would be forwarded: %v", raw, r)
	}
	if s.zone.Load().contains(r.Question[0].Name) {
		t.Fatalf("query %x for the zone would be forwarded", raw)
	}
	b, err := s.upstreamQuery(r).Pack()
	if err != nil {
		t.Fatalf("query %x stamped does not pack: %v", raw, err)
	}
	var back mdns.Msg
	if err := back.Unpack(b); err != nil {
		t.Fatalf("query %x stamped does not unpack: %v", raw, err)
	}
	if err := s.checkStamp(&back); err == nil {
		t.Fatalf("query %x, stamped by this server, would be forwarded by it again", raw)
	}
}

func isTransfer(r *mdns.Msg) bool {
	return len(r.Question) == 1 && (r.Question[0].Qtype == mdns.TypeAXFR || r.Question[0].Qtype == mdns.TypeIXFR)
}

// checkAnswer holds for every answer: it has the query's ID, fits a UDP
// datagram the client can take, and to a refused client is no larger than
// a minimal answer (no amplification); its rcode follows the rules of
// refusal (server.go).
func checkAnswer(t testing.TB, raw, out []byte, refused bool) {
	if out == nil {
		return
	}
	if out[0] != raw[0] || out[1] != raw[1] {
		t.Fatalf("answer ID %x, want %x (query %x)", out[:2], raw[:2], raw)
	}
	if len(out) > ednsSize {
		t.Fatalf("answer of %d bytes to %x, want <= %d", len(out), raw, ednsSize)
	}
	if refused && len(out) > len(raw)+11 { // +11: an OPT record we add
		t.Fatalf("refused client got %d bytes for a %d-byte query %x", len(out), len(raw), raw)
	}
	var r, m mdns.Msg
	if r.Unpack(raw) != nil || m.Unpack(out) != nil {
		return // handleRaw checked that the answer unpacks
	}
	want := -1
	switch {
	case refused:
		want = mdns.RcodeRefused
	case r.Opcode != mdns.OpcodeQuery:
		want = mdns.RcodeNotImplemented
	case len(r.Question) != 1 || len(r.Answer) > 0:
	case ednsVersion(&r) > 0:
		want = mdns.RcodeBadVers
	case isTransfer(&r):
		want = mdns.RcodeRefused
	}
	if want >= 0 && m.Rcode != want {
		t.Fatalf("answer to %v: rcode %s, want %s", &r, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[want])
	}
}

// fuzzServer forwards names outside the zone, as far as handlePacket goes
// (it returns such a query instead): it never dials.
func fuzzServer() *Server {
	return New(Config{
		Policy: Policy{
			Allow:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Forwarders: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		},
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("the fuzz server never dials")
		},
	}, testZone())
}

// seed is a query of the seed corpus, kept in testdata/fuzz/FuzzHandle
// as seed-NAME.
type seed struct {
	name string
	msg  func() *mdns.Msg
}

func seeds() []seed {
	q := func(name string, t uint16) func() *mdns.Msg {
		return func() *mdns.Msg { return query(name, t) }
	}
	edns := func(f func() *mdns.Msg, version uint8) func() *mdns.Msg {
		return func() *mdns.Msg {
			m := f()
			m.SetEdns0(4096, true)
			m.IsEdns0().SetVersion(version)
			return m
		}
	}
	opcode := func(op int) func() *mdns.Msg {
		return func() *mdns.Msg {
			m := query("mail.example.org.", mdns.TypeSOA)
			m.Opcode = op
			return m
		}
	}
	stamped := func(n int) func() *mdns.Msg {
		return func() *mdns.Msg {
			m := query("www.example.net.", mdns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option,
				&mdns.EDNS0_LOCAL{Code: stampOption, Data: make([]byte, n*stampLen)})
			return m
		}
	}
	return []seed{
		{"service-a", q("mail.mail.example.org.", mdns.TypeA)},
		{"mx", q("mail.example.org.", mdns.TypeMX)},
		{"soa", q("mail.example.org.", mdns.TypeSOA)},
		{"any", q("mail.example.org.", mdns.TypeANY)},
		{"nxdomain-aaaa", q("x.mail.example.org.", mdns.TypeAAAA)},
		{"forwarded", q("example.net.", mdns.TypeA)},
		{"service-a-edns", edns(q("mail.mail.example.org.", mdns.TypeA), 0)},
		{"forwarded-edns", edns(q("example.net.", mdns.TypeA), 0)},
		{"edns-version-1", edns(q("mail.mail.example.org.", mdns.TypeA), 1)},
		{"edns-version-255-forwarded", edns(q("example.net.", mdns.TypeA), 255)},
		{"axfr", q("mail.example.org.", mdns.TypeAXFR)},
		{"axfr-forwarded", q("example.net.", mdns.TypeAXFR)},
		{"ixfr", func() *mdns.Msg {
			return new(mdns.Msg).SetIxfr("mail.example.org.", 1, "ns.mail.example.org.", "hostmaster.mail.example.org.")
		}},
		{"opcode-iquery", opcode(mdns.OpcodeIQuery)},
		{"opcode-status", opcode(mdns.OpcodeStatus)},
		{"opcode-3", opcode(3)},
		{"opcode-notify", opcode(mdns.OpcodeNotify)},
		{"opcode-update", opcode(mdns.OpcodeUpdate)},
		{"opcode-15", opcode(15)},
		{"stamped-once", stamped(1)},
		{"stamped-max-hops", stamped(maxHops)},
	}
}

func seedQueries() [][]byte {
	var out [][]byte
	for _, s := range seeds() {
		m := s.msg()
		m.Id = 0x5eed // not random: the corpus is checked in
		b, err := m.Pack()
		if err != nil {
			panic(fmt.Sprintf("seed %s: %v", s.name, err))
		}
		out = append(out, b)
	}
	return out
}

// The checked-in corpus holds every seed, from an allowed client (go test
// -update rewrites it); FuzzHandle runs it in every go test.
func TestSeedCorpus(t *testing.T) {
	for i, raw := range seedQueries() {
		name := seeds()[i].name
		golden.Check(t, filepath.Join("testdata/fuzz/FuzzHandle", "seed-"+name),
			fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nbool(true)\n", raw))
	}
}

// FuzzHandle feeds arbitrary datagrams through the query path, from an
// allowed and from a refused client. Its seed corpus (testdata/fuzz, the
// seeds above among it) runs in every `go test`; `go test -fuzz
// FuzzHandle` explores.
func FuzzHandle(f *testing.F) {
	s := fuzzServer()
	f.Fuzz(func(t *testing.T, raw []byte, allowed bool) {
		from := netip.MustParseAddr("198.51.100.7")
		if allowed {
			from = netip.MustParseAddr("10.9.9.9")
		}
		checkAnswer(t, raw, handleRaw(t, s, from, raw), !allowed)
	})
}

// TestHandleMutatedPackets is the bounded, deterministic fuzz run CI does:
// 20000 mutations of the seed queries with a fixed seed.
func TestHandleMutatedPackets(t *testing.T) {
	s := fuzzServer()
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := seedQueries()
	answered := 0
	for i := range 20000 {
		raw := append([]byte(nil), seeds[i%len(seeds)]...)
		raw = mutate(rng, raw)
		allowed := i%2 == 0
		from := netip.MustParseAddr("198.51.100.7")
		if allowed {
			from = netip.MustParseAddr("10.9.9.9")
		}
		out := handleRaw(t, s, from, raw)
		if out != nil {
			answered++
		}
		checkAnswer(t, raw, out, !allowed)
	}
	if answered == 0 {
		t.Errorf("no mutated packet was answered; the mutations never reach the handler")
	}
	t.Logf("%d of 20000 mutated packets answered", answered)
}

func mutate(rng *rand.Rand, b []byte) []byte {
	for range 1 + rng.IntN(4) {
		switch rng.IntN(5) {
		case 0: // flip a bit
			if len(b) > 0 {
				i := rng.IntN(len(b))
				b[i] ^= 1 << rng.IntN(8)
			}
		case 1: // random byte
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
		case 2: // truncate
			if len(b) > 0 {
				b = b[:rng.IntN(len(b))]
			}
		case 3: // append garbage
			for range rng.IntN(16) {
				b = append(b, byte(rng.IntN(256)))
			}
		case 4: // compression pointer loop at a random offset
			if len(b) > 14 {
				i := 12 + rng.IntN(len(b)-13)
				b[i], b[i+1] = 0xC0, byte(i)
			}
		}
	}
	return b
}
