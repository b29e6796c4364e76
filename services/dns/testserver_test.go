package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/testenv"
)

// slow bounds every wait of these tests for an answer that must come; a
// test never asserts how fast it came.
const slow = 30 * time.Second

// serving is a Server on loopback sockets, stopped when the test ends.
type serving struct {
	udp4, udp6, tcp string // addresses; udp6 empty unless asked for
}

// listenLoopback opens the sockets serve serves: 127.0.0.1, and [::1]
// with v6.
func listenLoopback(t *testing.T, v6 bool) ([]net.PacketConn, []net.Listener, serving) {
	t.Helper()
	addrs := []string{"127.0.0.1:0"}
	if v6 {
		addrs = append(addrs, "[::1]:0")
	}
	pcs, lns, err := Listen(addrs)
	if err != nil {
		testenv.Unavailable(t, "loopback sockets: "+err.Error())
	}
	var sv serving
	for _, pc := range pcs {
		a := pc.LocalAddr().(*net.UDPAddr)
		switch {
		case a.IP.To4() != nil && sv.udp4 == "":
			sv.udp4 = a.String()
		case a.IP.To4() == nil && sv.udp6 == "":
			sv.udp6 = a.String()
		}
	}
	sv.tcp = lns[0].Addr().String()
	return pcs, lns, sv
}

// serve runs s on the sockets until the test ends.
func serve(t *testing.T, s *Server, pcs []net.PacketConn, lns []net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pcs, lns) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	})
}

// exchange sends q over network ("udp" or "tcp") to addr.
func exchange(t *testing.T, network, addr string, q *mdns.Msg) *mdns.Msg {
	t.Helper()
	m, err := tryExchange(network, addr, q)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tryExchange is exchange for goroutines other than the test's.
func tryExchange(network, addr string, q *mdns.Msg) (*mdns.Msg, error) {
	c := &mdns.Client{Net: network, Timeout: slow, UDPSize: 4096}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		return nil, fmt.Errorf("exchange %v over %s with %s: %w", q.Question, network, addr, err)
	}
	return m, nil
}

// upstream is a resolver on 127.0.0.1 that answers every A query with
// 203.0.113.7 and records what it was asked. Held, it answers only once
// released.
type upstream struct {
	addr    netip.AddrPort
	queries chan *mdns.Msg // every query, as it arrives

	release chan struct{} // closed: answer
	once    sync.Once
}

func startUpstream(t *testing.T, held bool) *upstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{
		addr:    netip.MustParseAddrPort(pc.LocalAddr().String()),
		queries: make(chan *mdns.Msg, 1000),
		release: make(chan struct{}),
	}
	if !held {
		u.open()
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			r := new(mdns.Msg)
			if r.Unpack(buf[:n]) == nil {
				go u.answer(pc, from, r)
			}
		}
	}()
	t.Cleanup(func() {
		u.open()
		pc.Close()
	})
	return u
}

// open releases held queries and answers the next at once.
func (u *upstream) open() { u.once.Do(func() { close(u.release) }) }

func (u *upstream) answer(pc net.PacketConn, to net.Addr, r *mdns.Msg) {
	u.queries <- r
	<-u.release
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	m.Answer = []mdns.RR{&mdns.A{
		Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
		A:   net.IPv4(203, 0, 113, 7),
	}}
	if b, err := m.Pack(); err == nil {
		_, _ = pc.WriteTo(b, to) // the server under test may be gone
	}
}

// wait returns the next query the upstream got.
func (u *upstream) wait(t *testing.T) *mdns.Msg {
	t.Helper()
	select {
	case q := <-u.queries:
		return q
	case <-time.After(slow):
		t.Fatalf("the upstream got no query in %v", slow)
		return nil
	}
}

// forbidDial is a Config.Dial for servers that must not forward.
func forbidDial(t *testing.T) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(_ context.Context, network, addr string) (net.Conn, error) {
		t.Errorf("dialled %s %s, want no upstream query", network, addr)
		return nil, net.ErrClosed
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
