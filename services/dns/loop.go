package dns

import (
	"bytes"
	"crypto/rand"
	"errors"

	mdns "github.com/miekg/dns"
)

// Forwarding loops. The node config refuses a forwarder that is this
// server, a member or the VIP, but the server cannot know every address
// that leads back to it: DHCP gives addresses, the cluster view moves the
// VIP and changes members, and a query forwarded by a member arrives from
// whichever of its addresses the kernel picked. Matching the query's source
// against the forwarders would also refuse the node's own stub resolver
// whenever a forwarder is on loopback. So the loop is caught in the query
// itself: every tandem-dns stamps the queries it forwards with its id (an
// EDNS option), and refuses to forward a query that carries its own id (a
// loop: SERVFAIL at the first return, however the query got back) or
// maxHops ids (a chain of tandem-dns servers longer than any meant one).
// Other servers' stamps pass on. A resolver that is not tandem-dns ignores
// the option and does not pass it on (RFC 6891 section 6.1.2); a loop
// through one is still bounded: each turn holds one of MaxUpstream slots,
// and when they are gone the innermost query gets SERVFAIL and the loop
// unwinds.

// stampOption is the EDNS option of the stamps, from the range for local
// use (RFC 6891 section 9). Its data is the ids of the servers that
// forwarded the query, in order.
const stampOption = 65432

// stampLen is the length of one id: 64 random bits per server.
const stampLen = 8

// maxHops is the most stamps a query may carry and still be forwarded.
const maxHops = 4

var (
	errLoop     = errors.New("forwarding loop: the query was forwarded by this server already")
	errTooFar   = errors.New("forwarding chain too long")
	errBadStamp = errors.New("malformed loop stamp")
)

func newStamp() [stampLen]byte {
	var id [stampLen]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24)
	return id
}

// stamps returns the ids a query carries.
func stamps(r *mdns.Msg) []byte {
	o := r.IsEdns0()
	if o == nil {
		return nil
	}
	var ids []byte
	for _, e := range o.Option {
		if l, ok := e.(*mdns.EDNS0_LOCAL); ok && l.Code == stampOption {
			ids = append(ids, l.Data...)
		}
	}
	return ids
}

// checkStamp reports why r must not be forwarded, or nil.
func (s *Server) checkStamp(r *mdns.Msg) error {
	ids := stamps(r)
	switch {
	case len(ids)%stampLen != 0:
		return errBadStamp
	case len(ids) >= maxHops*stampLen:
		return errTooFar
	}
	for i := 0; i < len(ids); i += stampLen {
		if bytes.Equal(ids[i:i+stampLen], s.id[:]) {
			return errLoop
		}
	}
	return nil
}

// stamp adds to q, which has EDNS, the stamps carried and this server's
// after them.
func (s *Server) stamp(q *mdns.Msg, carried []byte) {
	o := q.IsEdns0()
	ids := append(carried[:len(carried):len(carried)], s.id[:]...)
	o.Option = append(o.Option, &mdns.EDNS0_LOCAL{Code: stampOption, Data: ids})
}

// loopAnswer is the SERVFAIL for a query that must not be forwarded.
func (s *Server) loopAnswer(m *mdns.Msg, q mdns.Question, err error) *mdns.Msg {
	s.loops.Add(1)
	if errors.Is(err, errLoop) {
		s.log.Warn("forward: refused", "name", q.Name, "err", err)
	} else {
		s.log.Debug("forward: refused", "name", q.Name, "err", err) // the client's to make up
	}
	return rcode(m, mdns.RcodeServerFailure)
}
