package dns

import (
	"context"
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

	"tandem/internal/nodeconfig"
)

// Config is the server's behaviour apart from the zone.
type Config struct {
	// Policy is who is answered and where other names go (SetPolicy
	// replaces it).
	Policy
	// CacheSize bounds the forwarded answers kept; 0 disables the cache.
	CacheSize int
	// Timeout bounds one exchange with an upstream. Default 2s.
	Timeout time.Duration
	// MaxUpstream bounds the queries forwarded at once; a query that needs
	// an upstream beyond it is answered SERVFAIL at once. Default
	// nodeconfig.DefaultDNSMaxUpstream.
	MaxUpstream int
	// RateLimit limits the responses over UDP; the zero value is off.
	RateLimit RateLimit
	// Logger names the component; nil discards.
	Logger *slog.Logger
	// Now is the cache's and the rate limit's clock; nil is time.Now.
	Now func() time.Time
	// Dial opens connections to upstreams; nil is a net.Dialer. Tests
	// that serve from a network namespace dial from inside it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Policy is who is answered and where other names go.
type Policy struct {
	// Allow are the client networks answered; loopback always is. A
	// network of every address (0.0.0.0/0, ::/0) counts only with
	// OpenResolver.
	Allow []netip.Prefix
	// Forwarders are the upstream resolvers, tried in order.
	Forwarders []netip.AddrPort
	// OpenResolver lets Allow hold a network of every address.
	OpenResolver bool
}

// Server answers DNS queries. It is safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	policy atomic.Pointer[policy]
	zone   atomic.Pointer[zone]
	cache  *cache
	limit  *limiter
	// slots holds a token per query upstream (MaxUpstream of them).
	slots chan struct{}
	// id stamps the queries this server forwards (loop.go).
	id  [stampLen]byte
	udp *mdns.Client
	tcp *mdns.Client

	served, busy, limited, loops atomic.Uint64
}

// ednsSize is the UDP payload size the server advertises (the DNS flag
// day's 1232, which avoids fragmentation).
const ednsSize = 1232

// New returns a server for zone z.
func New(cfg Config, z Zone) *Server {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxUpstream == 0 {
		cfg.MaxUpstream = nodeconfig.DefaultDNSMaxUpstream
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
		limit: newLimiter(cfg.RateLimit, cfg.Now),
		slots: make(chan struct{}, cfg.MaxUpstream),
		id:    newStamp(),
		udp:   &mdns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsSize},
		tcp:   &mdns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}
	s.SetPolicy(cfg.Policy)
	s.SetZone(z)
	return s
}

// policy is Policy as the handler uses it.
type policy struct {
	allow      []netip.Prefix
	forwarders []netip.AddrPort
}

// SetPolicy replaces the allowed networks and the upstreams atomically
// (Config.Policy at New). Without OpenResolver a network of every address
// in Allow is left out: the server never answers the world by accident.
func (s *Server) SetPolicy(p Policy) {
	var allow []netip.Prefix
	for _, n := range p.Allow {
		if n.Bits() == 0 && !p.OpenResolver {
			s.log.Warn("allow: network of every address left out: not an open resolver", "network", n)
			continue
		}
		allow = append(allow, n)
	}
	s.policy.Store(&policy{allow: allow, forwarders: slices.Clone(p.Forwarders)})
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
// nil means no answer at all (to a response, or past the rate limit).
// An answer to a client that is not allowed, or to a malformed query, is
// never larger than the query's question.
func (s *Server) Handle(ctx context.Context, from netip.Addr, udp bool, r *mdns.Msg) *mdns.Msg {
	m, upstream := s.answer(from, udp, r)
	if !upstream {
		return m
	}
	if !s.takeSlot() {
		return s.busyAnswer(r, udp)
	}
	defer s.freeSlot()
	return fit(s.forward(ctx, r), r, udp)
}

// answer is Handle without the upstreams: the answer, or upstream when
// only an upstream can answer r.
func (s *Server) answer(from netip.Addr, udp bool, r *mdns.Msg) (m *mdns.Msg, upstream bool) {
	s.served.Add(1)
	if r.Response {
		return nil, false // never answer answers: no reflection loops
	}
	if udp {
		if m, limited := s.rateLimit(from, r); limited {
			return m, false
		}
	}
	m = new(mdns.Msg)
	m.SetReply(r)
	m.Compress = true
	if code, refused := s.refusal(from, r); refused {
		if code == mdns.RcodeBadVers {
			return badVersion(m, r), false
		}
		return rcode(m, code), false
	}
	q := r.Question[0]
	z := s.zone.Load()
	if z.contains(q.Name) {
		if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
			return rcode(m, mdns.RcodeRefused), false
		}
		z.answer(m, q)
		return fit(m, r, udp), false
	}
	if len(s.policy.Load().forwarders) == 0 || !r.RecursionDesired {
		return rcode(m, mdns.RcodeRefused), false
	}
	if err := s.checkStamp(r); err != nil {
		return s.loopAnswer(m, q, err), false
	}
	if c := s.cache.get(keyOf(r)); c != nil {
		c.Id = r.Id
		return fit(c, r, udp), false
	}
	return nil, true
}

// refusal is the error code for a query that gets no data at all, in the
// order checked: who asks, what kind of message, its form, then what it
// asks for.
func (s *Server) refusal(from netip.Addr, r *mdns.Msg) (int, bool) {
	switch {
	case !s.allowed(from):
		return mdns.RcodeRefused, true
	case r.Opcode != mdns.OpcodeQuery:
		// Every opcode but QUERY, over UDP and TCP alike.
		return mdns.RcodeNotImplemented, true
	case len(r.Question) != 1 || len(r.Answer) > 0:
		return mdns.RcodeFormatError, true
	case ednsVersion(r) > 0:
		return mdns.RcodeBadVers, true
	case r.Question[0].Qtype == mdns.TypeAXFR || r.Question[0].Qtype == mdns.TypeIXFR:
		// No zone transfers, of the cluster zone or through a forwarder:
		// the zone is made from the node config, not transferred.
		return mdns.RcodeRefused, true
	case len(r.Ns) > 0: // only an IXFR query has an authority section
		return mdns.RcodeFormatError, true
	}
	return 0, false
}

// ednsVersion is the query's EDNS version, -1 without EDNS.
func ednsVersion(r *mdns.Msg) int {
	if o := r.IsEdns0(); o != nil {
		return int(o.Version())
	}
	return -1
}

// badVersion answers a query of an EDNS version above 0 (RFC 6891
// section 6.1.3): BADVERS, with the version this server speaks (0).
func badVersion(m, r *mdns.Msg) *mdns.Msg {
	m.Rcode = mdns.RcodeBadVers
	m.RecursionAvailable = false
	m.SetEdns0(ednsSize, r.IsEdns0().Do())
	return m
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
// source could use for reflection), and that every opcode goes to the
// handler, so that an unknown one gets the same NOTIMP (or REFUSED, or
// nothing past the rate limit) over UDP and TCP. An IXFR query has one
// authority record.
func acceptQuery(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: a response
		return mdns.MsgIgnore
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 1 || dh.Arcount > 2 {
		return mdns.MsgIgnore
	}
	return mdns.MsgAccept
}

// Stats are the server's counters since New.
type Stats struct {
	// Served is the queries that reached the handler.
	Served uint64
	// Busy is the queries answered SERVFAIL because MaxUpstream others
	// were upstream.
	Busy uint64
	// Limited is the responses the rate limit dropped or truncated.
	Limited uint64
	// Loops is the queries not forwarded because they had been through
	// this server already, or through too many (loop.go).
	Loops uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Served: s.served.Load(), Busy: s.busy.Load(), Limited: s.limited.Load(), Loops: s.loops.Load()}
}
