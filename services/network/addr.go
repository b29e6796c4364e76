package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"tandem/internal/nodeconfig"
)

// addrs returns the addresses on interface index.
func (s *Service) addrs(index uint32) ([]netip.Prefix, error) {
	msgs, err := s.conn.Address.List()
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []netip.Prefix
	for _, m := range msgs {
		if m.Index != index || m.Attributes == nil {
			continue
		}
		ip := m.Attributes.Local
		if ip == nil {
			ip = m.Attributes.Address
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, netip.PrefixFrom(a.Unmap(), int(m.PrefixLength)))
		}
	}
	return out, nil
}

func (s *Service) applyAddresses(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	for _, ifc := range cfg.Interfaces() {
		for _, p := range ifc.Prefixes() {
			ch, err := s.ensureAddr(ifc.Name, p)
			if err != nil {
				return changes, err
			}
			changes = append(changes, ch...)
		}
	}
	return changes, nil
}

// ensureAddr adds p to the interface unless it is there.
func (s *Service) ensureAddr(name string, p netip.Prefix) ([]Change, error) {
	l, err := s.link(name)
	if err != nil {
		return nil, err
	}
	have, err := s.addrs(l.Index)
	if err != nil {
		return nil, err
	}
	for _, h := range have {
		if h == p {
			return nil, nil
		}
	}
	if err := s.conn.Address.New(addrMsg(l.Index, p)); err != nil {
		return nil, fmt.Errorf("add %s to %s: %w", p, name, err)
	}
	return []Change{changef("%s: address %s", name, p)}, nil
}

// removeAddr deletes p from the interface; absent is fine.
func (s *Service) removeAddr(name string, p netip.Prefix) error {
	l, err := s.link(name)
	if err != nil {
		return err
	}
	err = s.conn.Address.Delete(addrMsg(l.Index, p))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s: %w", p, name, err)
	}
	return nil
}

func addrMsg(index uint32, p netip.Prefix) *rtnetlink.AddressMessage {
	ip := net.IP(p.Addr().AsSlice())
	m := &rtnetlink.AddressMessage{
		Family:       unix.AF_INET6,
		PrefixLength: uint8(p.Bits()),
		Scope:        unix.RT_SCOPE_UNIVERSE,
		Index:        index,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip},
	}
	if p.Addr().Is4() {
		m.Family = unix.AF_INET
		m.Attributes.Local = ip
		if p.Bits() < 31 {
			m.Attributes.Broadcast = broadcast(p).AsSlice()
		}
	}
	if p.Addr().IsLoopback() {
		m.Scope = unix.RT_SCOPE_HOST
	}
	return m
}

// broadcast is the last address of IPv4 prefix p.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// route is a route in the main table as the service cares about it.
type route struct {
	dst    netip.Prefix
	gw     netip.Addr // invalid: on-link
	dev    string     // empty: the kernel picks it from gw
	metric uint32
}

func (r route) String() string {
	s := r.dst.String()
	if r.gw.IsValid() {
		s += " via " + r.gw.String()
	}
	if r.dev != "" {
		s += " dev " + r.dev
	}
	return s
}

func (s *Service) applyRoutes(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	for _, r := range cfg.Network.Routes {
		ch, err := s.ensureRoute(route{r.Destination(), r.Gateway(), r.Dev, uint32(r.Metric)})
		if err != nil {
			return changes, err
		}
		changes = append(changes, ch...)
	}
	return changes, nil
}

func (s *Service) ensureRoute(r route) ([]Change, error) {
	var oif uint32
	if r.dev != "" {
		l, err := s.link(r.dev)
		if err != nil {
			return nil, err
		}
		oif = l.Index
	}
	have, err := s.hasRoute(r, oif)
	if err != nil || have {
		return nil, err
	}
	if err := s.conn.Route.Add(routeMsg(r, oif)); err != nil {
		return nil, fmt.Errorf("add route %s: %w", r, err)
	}
	return []Change{changef("route %s", r)}, nil
}

func (s *Service) removeRoute(r route, oif uint32) error {
	err := s.conn.Route.Delete(routeMsg(r, oif))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route %s: %w", r, err)
	}
	return nil
}

func (s *Service) hasRoute(r route, oif uint32) (bool, error) {
	msgs, err := s.conn.Route.List()
	if err != nil {
		return false, fmt.Errorf("list routes: %w", err)
	}
	metric := r.metric
	if metric == 0 && r.dst.Addr().Is6() {
		metric = 1024 // the kernel's metric for IPv6 routes given none
	}
	for _, m := range msgs {
		if m.Table != unix.RT_TABLE_MAIN || int(m.DstLength) != r.dst.Bits() || m.Attributes.Priority != metric {
			continue
		}
		if oif != 0 && m.Attributes.OutIface != oif {
			continue
		}
		dst, _ := netip.AddrFromSlice(m.Attributes.Dst)
		if m.Attributes.Dst == nil {
			dst = netip.IPv6Unspecified()
			if m.Family == unix.AF_INET {
				dst = netip.IPv4Unspecified()
			}
		}
		gw, _ := netip.AddrFromSlice(m.Attributes.Gateway)
		if dst.Unmap() == r.dst.Addr() && gw.Unmap() == r.gw {
			return true, nil
		}
	}
	return false, nil
}

func routeMsg(r route, oif uint32) *rtnetlink.RouteMessage {
	m := &rtnetlink.RouteMessage{
		Family:    unix.AF_INET6,
		DstLength: uint8(r.dst.Bits()),
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_STATIC,
		Scope:     unix.RT_SCOPE_UNIVERSE,
		Type:      unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{
			OutIface: oif,
			Priority: r.metric,
		},
	}
	if r.dst.Addr().Is4() {
		m.Family = unix.AF_INET
	}
	if r.dst.Bits() > 0 {
		m.Attributes.Dst = net.IP(r.dst.Addr().AsSlice())
	}
	if r.gw.IsValid() {
		m.Attributes.Gateway = net.IP(r.gw.AsSlice())
	} else {
		m.Scope = unix.RT_SCOPE_LINK
	}
	return m
}
