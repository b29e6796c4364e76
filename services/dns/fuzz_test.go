package dns

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// handleRaw is what the UDP server does with one datagram.
func handleRaw(t testing.TB, s *Server, from netip.Addr, raw []byte) []byte {
	out, fwd := s.handlePacket(raw, from)
	if fwd != nil {
		t.Fatalf("query %x wants an upstream from a server without forwarders", raw)
	}
	if out != nil {
		var m mdns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer to %x does not unpack: %v", raw, err)
		}
	}
	return out
}

// checkAnswer holds for every answer: it has the query's ID, fits a UDP
// datagram the client can take, and to a refused client is no larger than
// a minimal answer (no amplification).
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
}

func fuzzServer() *Server {
	z := testZone()
	return New(Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, z)
}

func seedQueries() [][]byte {
	var seeds [][]byte
	for _, q := range []struct {
		name string
		t    uint16
	}{
		{"mail.mail.example.org.", mdns.TypeA}, {"mail.example.org.", mdns.TypeMX},
		{"mail.example.org.", mdns.TypeSOA}, {"mail.example.org.", mdns.TypeANY},
		{"x.mail.example.org.", mdns.TypeAAAA}, {"example.net.", mdns.TypeA},
	} {
		m := query(q.name, q.t)
		b, _ := m.Pack()
		seeds = append(seeds, b)
		m.SetEdns0(4096, true)
		b, _ = m.Pack()
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzHandle feeds arbitrary datagrams through the query path, from an
// allowed and from a refused client. Its seed corpus (testdata/fuzz and the
// seeds below) runs in every `go test`; `go test -fuzz FuzzHandle` explores.
func FuzzHandle(f *testing.F) {
	for _, b := range seedQueries() {
		f.Add(b, true)
	}
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
