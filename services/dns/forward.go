package dns

import (
	"context"
	"errors"

	mdns "github.com/miekg/dns"
)

// takeSlot reserves one of the MaxUpstream places for a query upstream,
// without waiting: a server that waited would pile up goroutines (and
// clients' retries) behind a slow or dead upstream.
func (s *Server) takeSlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) freeSlot() { <-s.slots }

// busyAnswer is the SERVFAIL for a query that needs an upstream while
// MaxUpstream others are there.
func (s *Server) busyAnswer(r *mdns.Msg, udp bool) *mdns.Msg {
	s.busy.Add(1)
	s.log.Debug("forward: upstream queries at their limit", "name", r.Question[0].Name, "max", s.cfg.MaxUpstream)
	m := new(mdns.Msg)
	m.SetReply(r)
	return fit(rcode(m, mdns.RcodeServerFailure), r, udp)
}

// forward answers from the first upstream that answers; the caller holds
// a slot.
func (s *Server) forward(ctx context.Context, r *mdns.Msg) *mdns.Msg {
	q := s.upstreamQuery(r)
	for _, up := range s.policy.Load().forwarders {
		resp, err := s.exchange(ctx, q, up.String())
		if err != nil {
			s.log.Warn("forward", "upstream", up, "name", q.Question[0].Name, "err", err)
			continue
		}
		s.cache.put(keyOf(r), resp)
		resp.Id = r.Id
		return resp
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	return rcode(m, mdns.RcodeServerFailure)
}

// upstreamQuery is the query that goes upstream for r: its question,
// its CD and DO bits, and the stamps (loop.go), this server's added. The
// rest of r stays here: other records and EDNS options (a cookie, a client
// subnet) are the client's business with this server, and a malformed one
// would make the upstream answer FORMERR.
func (s *Server) upstreamQuery(r *mdns.Msg) *mdns.Msg {
	q := new(mdns.Msg)
	q.Id = mdns.Id()
	q.RecursionDesired = true
	q.CheckingDisabled = r.CheckingDisabled
	q.Question = []mdns.Question{r.Question[0]}
	do := false
	if o := r.IsEdns0(); o != nil {
		do = o.Do()
	}
	q.SetEdns0(ednsSize, do)
	s.stamp(q, stamps(r))
	return q
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
