package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Config is the server's behaviour apart from the zone.
type Config struct {
	// Allow are the client networks answered; loopback always is.
	Allow []netip.Prefix
	// Forwarders are the upstream resolvers, tried in order.
	Forwarders []netip.AddrPort
	// CacheSize bounds the forwarded answers kept; 0 disables the cache.
	CacheSize int
	// Timeout bounds one exchange with an upstream. Default 2s.
	Timeout time.Duration
	// Logger names the component; nil discards.
	Logger *slog.Logger
	// Now is the cache's clock; nil is time.Now.
	Now func() time.Time
	// Dial opens connections to upstreams; nil is a net.Dialer. Tests
	// that serve from a network namespace dial from inside it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Server answers DNS queries. It is safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	policy atomic.Pointer[policy]
	zone   atomic.Pointer[zone]
	cache  *cache
	udp    *mdns.Client
	tcp    *mdns.Client
	served atomic.Uint64
}

// ednsSize is the UDP payload size the server advertises (the DNS flag
// day's 1232, which avoids fragmentation).
const ednsSize = 1232

// New returns a server for zone z.
func New(cfg Config, z Zone) *Server {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		log:   log,
		cache: newCache(cfg.CacheSize, cfg.Now),
		udp:   &mdns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsSize},
		tcp:   &mdns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}
	s.SetPolicy(cfg.Allow, cfg.Forwarders)
	s.SetZone(z)
	return s
}

// policy is who is answered and where other names go.
type policy struct {
	allow      []netip.Prefix
	forwarders []netip.AddrPort
}

// SetPolicy replaces the allowed networks and the upstreams atomically
// (Config.Allow and Config.Forwarders at New).
func (s *Server) SetPolicy(allow []netip.Prefix, forwarders []netip.AddrPort) {
	s.policy.Store(&policy{allow: slices.Clone(allow), forwarders: slices.Clone(forwarders)})
}

// SetZone replaces the zone atomically; queries in flight finish with the
// old one, the next see the new one. The SOA serial grows with every call.
func (s *Server) SetZone(z Zone) {
	var serial uint32
	now := uint32(s.cfg.Now().Unix())
	if old := s.zone.Load(); old != nil {
		serial = max(old.serial+1, now)
	} else {
		serial = now
	}
	s.zone.Store(compile(z, serial))
	s.log.Info("zone loaded", "domain", z.Domain, "vip", z.VIP, "members", len(z.Members), "serial", serial)
}

// Serial returns the current zone's SOA serial.
func (s *Server) Serial() uint32 { return s.zone.Load().serial }

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	from, udp := peer(w.RemoteAddr())
	m := s.Handle(context.Background(), from, udp, r)
	if m == nil {
		return
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write answer", "to", from, "err", err)
	}
}

func peer(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), true
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), false
	}
	return netip.Addr{}, true
}

// Handle answers query r from client address from (over UDP when udp);
// nil means no answer at all. An answer to a client that is not allowed,
// or to a malformed query, is never larger than the query's question.
func (s *Server) Handle(ctx context.Context, from netip.Addr, udp bool, r *mdns.Msg) *mdns.Msg {
	s.served.Add(1)
	if r.Response {
		return nil // never answer answers: no reflection loops
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Compress = true
	switch {
	case !s.allowed(from):
		return rcode(m, mdns.RcodeRefused)
	case r.Opcode != mdns.OpcodeQuery:
		return rcode(m, mdns.RcodeNotImplemented)
	case len(r.Question) != 1 || len(r.Answer) > 0 || len(r.Ns) > 0:
		return rcode(m, mdns.RcodeFormatError)
	}
	q := r.Question[0]
	z := s.zone.Load()
	if z.contains(q.Name) {
		if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
			return rcode(m, mdns.RcodeRefused)
		}
		z.answer(m, q)
		return fit(m, r, udp)
	}
	if len(s.policy.Load().forwarders) == 0 || !r.RecursionDesired {
		return rcode(m, mdns.RcodeRefused)
	}
	return fit(s.forward(ctx, r), r, udp)
}

func rcode(m *mdns.Msg, code int) *mdns.Msg {
	m.Rcode = code
	m.RecursionAvailable = false
	return m
}

// fit adds EDNS when the client used it and truncates a UDP answer to the
// client's size.
func fit(m, r *mdns.Msg, udp bool) *mdns.Msg {
	size := mdns.MinMsgSize
	if o := r.IsEdns0(); o != nil {
		size = int(max(min(o.UDPSize(), ednsSize), mdns.MinMsgSize))
		if m.IsEdns0() == nil {
			m.SetEdns0(ednsSize, o.Do())
		}
	} else {
		// The client did not speak EDNS; do not answer with it.
		extra := m.Extra[:0]
		for _, rr := range m.Extra {
			if rr.Header().Rrtype != mdns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		m.Extra = extra
	}
	if udp {
		m.Truncate(size)
	}
	return m
}

func (s *Server) allowed(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, p := range s.policy.Load().allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forward answers from the cache or the first upstream that answers.
func (s *Server) forward(ctx context.Context, r *mdns.Msg) *mdns.Msg {
	key := keyOf(r)
	if m := s.cache.get(key); m != nil {
		m.Id = r.Id
		return m
	}
	q := r.Copy()
	q.Id = mdns.Id()
	q.RecursionDesired = true
	if q.IsEdns0() == nil {
		q.SetEdns0(ednsSize, false)
	}
	for _, up := range s.policy.Load().forwarders {
		resp, err := s.exchange(ctx, q, up.String())
		if err != nil {
			s.log.Warn("forward", "upstream", up, "name", q.Question[0].Name, "err", err)
			continue
		}
		s.cache.put(key, resp)
		resp.Id = r.Id
		return resp
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	return rcode(m, mdns.RcodeServerFailure)
}

func (s *Server) exchange(ctx context.Context, q *mdns.Msg, addr string) (*mdns.Msg, error) {
	resp, err := s.exchangeOver(ctx, s.udp, q, addr)
	if err == nil && resp.Truncated {
		resp, err = s.exchangeOver(ctx, s.tcp, q, addr)
	}
	if err != nil {
		return nil, err
	}
	if resp.Id != q.Id || len(resp.Question) != 1 || !equalQuestion(resp.Question[0], q.Question[0]) {
		return nil, errors.New("answer does not match the question")
	}
	return resp, nil
}

func (s *Server) exchangeOver(ctx context.Context, c *mdns.Client, q *mdns.Msg, addr string) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	conn, err := s.cfg.Dial(ctx, c.Net, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, _, err := c.ExchangeWithConnContext(ctx, q, &mdns.Conn{Conn: conn, UDPSize: c.UDPSize})
	return resp, err
}

func equalQuestion(a, b mdns.Question) bool {
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && mdns.CanonicalName(a.Name) == mdns.CanonicalName(b.Name)
}

// Listen opens UDP and TCP sockets on each host:port. UDP gets one socket
// per CPU on the same port (SO_REUSEPORT), so that the kernel spreads
// queries over several reader loops.
func Listen(addrs []string) ([]net.PacketConn, []net.Listener, error) {
	var pcs []net.PacketConn
	var lns []net.Listener
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	lc := net.ListenConfig{Control: reusePort}
	for _, a := range addrs {
		pc, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("listen udp %s: %w", a, err)
		}
		pcs = append(pcs, pc)
		// The others on the port the first got, so ":0" works too.
		bound := pc.LocalAddr().String()
		for range runtime.GOMAXPROCS(0) - 1 {
			more, err := lc.ListenPacket(context.Background(), "udp", bound)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("listen udp %s: %w", bound, err)
			}
			pcs = append(pcs, more)
		}
		l, err := net.Listen("tcp", bound)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("listen tcp %s: %w", a, err)
		}
		lns = append(lns, l)
	}
	return pcs, lns, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Serve answers on the given sockets until ctx ends, then shuts down and
// returns nil; a server that fails returns its error.
func (s *Server) Serve(ctx context.Context, pcs []net.PacketConn, lns []net.Listener) error {
	var servers []*mdns.Server
	var udp4 []*net.UDPConn
	for _, pc := range pcs {
		if uc, ok := pc.(*net.UDPConn); ok && uc.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
			udp4 = append(udp4, uc)
			continue
		}
		servers = append(servers, &mdns.Server{PacketConn: pc, Handler: s, MsgAcceptFunc: acceptQuery})
	}
	for _, l := range lns {
		servers = append(servers, &mdns.Server{Listener: l, Handler: s, MsgAcceptFunc: acceptQuery,
			ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 5 * time.Second }})
	}
	errc := make(chan error, len(servers)+len(udp4))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, uc := range udp4 {
		go func() { errc <- s.serveUDP4(stop, uc) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	for _, uc := range udp4 {
		uc.Close()
	}
	for _, srv := range servers {
		_ = srv.Shutdown() // stopping: its listener closes either way
	}
	return err
}

// acceptQuery is miekg's default filter except that a malformed header
// gets no answer at all (the default answers FORMERR, which a spoofed
// source could use for reflection); the handler answers the rest.
func acceptQuery(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: a response
		return mdns.MsgIgnore
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return mdns.MsgIgnore
	}
	if op := int(dh.Bits>>11) & 0xF; op != mdns.OpcodeQuery {
		return mdns.MsgRejectNotImplemented
	}
	return mdns.MsgAccept
}

// Served returns how many queries reached the handler.
func (s *Server) Served() uint64 { return s.served.Load() }
