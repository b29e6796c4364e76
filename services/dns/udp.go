package dns

import (
	"context"
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// batch is how many datagrams one recvmmsg/sendmmsg call moves.
const batch = 32

// maxQuery is the largest UDP query read; longer ones are cut and then
// fail to unpack, so they get no answer.
const maxQuery = 4096

// serveUDP4 answers on an IPv4 UDP socket: it reads queries in batches
// (recvmmsg), answers the zone, the cache and refusals inline, and writes
// the answers in batches (sendmmsg); a query that needs an upstream is
// answered from its own goroutine, one of MaxUpstream at most (beyond
// them SERVFAIL, inline). On a wildcard address each answer
// leaves from the address the query came to (IP_PKTINFO), which matters
// for a node that also holds the VIP.
func (s *Server) serveUDP4(ctx context.Context, uc *net.UDPConn) error {
	p := ipv4.NewPacketConn(uc)
	wildcard := uc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified()
	if wildcard {
		if err := p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
			return err
		}
	}
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxQuery)}
		if wildcard {
			in[i].OOB = ipv4.NewControlMessage(ipv4.FlagDst | ipv4.FlagInterface)
		}
	}
	out := make([]ipv4.Message, 0, batch)
	for {
		n, err := p.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		out = out[:0]
		for i := range in[:n] {
			m := &in[i]
			ua, _ := m.Addr.(*net.UDPAddr)
			if ua == nil {
				continue
			}
			from, _ := netip.AddrFromSlice(ua.IP)
			var oob []byte
			if wildcard {
				var cm ipv4.ControlMessage
				if cm.Parse(m.OOB[:m.NN]) == nil && cm.Dst != nil {
					oob = (&ipv4.ControlMessage{Src: cm.Dst, IfIndex: cm.IfIndex}).Marshal()
				}
			}
			resp, r := s.handlePacket(m.Buffers[0][:m.N], from.Unmap())
			switch {
			case r != nil && s.takeSlot(): // wants an upstream: answer later
				addr := *ua
				go func() {
					b := s.answerForwarded(ctx, r)
					s.freeSlot() // before the answer leaves: its client may ask again at once
					if b != nil {
						_, _ = p.WriteBatch([]ipv4.Message{{Buffers: [][]byte{b}, Addr: &addr, OOB: oob}}, 0) // as a lost datagram: the client retries
					}
				}()
			case r != nil: // MaxUpstream queries are upstream already
				if b := s.pack(s.busyAnswer(r, true)); b != nil {
					out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: m.Addr, OOB: oob})
				}
			case resp != nil:
				out = append(out, ipv4.Message{Buffers: [][]byte{resp}, Addr: m.Addr, OOB: oob})
			}
		}
		for len(out) > 0 {
			k, err := p.WriteBatch(out, 0)
			if err != nil {
				s.log.Debug("write answers", "err", err)
				break
			}
			out = out[k:]
		}
	}
}

// handlePacket answers one UDP datagram: the packed answer, or nil for
// none; or, for a query only an upstream can answer, the query itself.
func (s *Server) handlePacket(raw []byte, from netip.Addr) ([]byte, *mdns.Msg) {
	if len(raw) < 12 {
		return nil, nil
	}
	dh := mdns.Header{
		Id:      uint16(raw[0])<<8 | uint16(raw[1]),
		Bits:    uint16(raw[2])<<8 | uint16(raw[3]),
		Qdcount: uint16(raw[4])<<8 | uint16(raw[5]),
		Ancount: uint16(raw[6])<<8 | uint16(raw[7]),
		Nscount: uint16(raw[8])<<8 | uint16(raw[9]),
		Arcount: uint16(raw[10])<<8 | uint16(raw[11]),
	}
	if acceptQuery(dh) != mdns.MsgAccept {
		return nil, nil // responses, garbage: silence
	}
	r := new(mdns.Msg)
	if err := r.Unpack(raw); err != nil {
		return nil, nil
	}
	m, upstream := s.answer(from, true, r)
	if upstream {
		return nil, r
	}
	return s.pack(m), nil
}

func (s *Server) answerForwarded(ctx context.Context, r *mdns.Msg) []byte {
	return s.pack(fit(s.forward(ctx, r), r, true))
}

func (s *Server) pack(m *mdns.Msg) []byte {
	if m == nil {
		return nil
	}
	b, err := m.Pack()
	if err != nil {
		s.log.Warn("pack answer", "err", err)
		return nil
	}
	return b
}
