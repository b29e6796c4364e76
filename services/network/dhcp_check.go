package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"tandem/internal/nodeconfig"
)

// What a DHCP reply may hand out. A reply is checked before anything of it
// is applied (the offer before it is requested, the ACK before it is
// bound, every renewal's ACK before it replaces the lease): values that
// would misroute the node or collide with the cluster refuse the reply,
// values that only cost time are clamped, and unusable name servers are
// dropped.
const (
	// minLeaseTime stops a zero or tiny lease time from turning the
	// renewal loop into a storm. The lease may then outlive the server's
	// idea of it by up to a minute; the renewal at T1 normally comes first.
	minLeaseTime = time.Minute
	// maxLeaseTime bounds an "infinite" (0xffffffff) or absurd lease, so
	// the node asks again at least every few days and notices a server
	// that changed or went away.
	maxLeaseTime = 7 * 24 * time.Hour
	// defaultLeaseTime is taken when an ACK has no lease time (RFC 2131
	// requires one).
	defaultLeaseTime = time.Hour
	// defaultPrefixLen is taken when a reply has no subnet mask.
	defaultPrefixLen = 24
	// minPrefixLen and maxPrefixLen bound the subnet a host lease may put
	// the node in. A mask shorter than /8 (/0 included) would make a good
	// part of the Internet look on-link. A /31 or /32 is refused rather
	// than accepted: a /32 leaves the router outside the subnet (it needs
	// an on-link route to the gateway or classless static routes, which
	// this client does not do) and a /31 is a point-to-point link (RFC
	// 3021); neither can be the LAN segment a cluster member sits on,
	// which must also hold its peer and the floating VIP.
	minPrefixLen, maxPrefixLen = 8, 30
	// maxLeaseDNS is how many of a reply's name servers are kept:
	// resolv.conf's resolvers read no more than three (MAXNS).
	maxLeaseDNS = 3
)

// ErrBadLease is wrapped by every LeaseError.
var ErrBadLease = errors.New("bad dhcp reply")

// LeaseError is a refused DHCP reply: the field at fault, its value and
// why it is refused.
type LeaseError struct {
	Iface  string
	Server netip.Addr // the reply's server identifier, if any
	Field  string     // "yiaddr", "subnet mask", "router", "lease time"
	Value  string
	Reason string
}

func (e *LeaseError) Error() string {
	return fmt.Sprintf("dhcp reply on %s from %s: %s %s: %s", e.Iface, e.Server, e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrBadLease) true.
func (e *LeaseError) Unwrap() error { return ErrBadLease }

// adjustment is a value of a reply that was clamped or dropped, not
// trusted as sent.
type adjustment struct {
	Field, Value, Used string
}

// reservedAddrs are the addresses the node config gives the cluster, which
// no DHCP server may hand this node, each with the field that names it.
type reservedAddrs map[netip.Addr]string

// clusterAddrs returns the VIP and every other member's address. The
// node's own member address is allowed: a DHCP reservation of it is how a
// member (an arbitrator, which needs no static address) gets it by DHCP.
func clusterAddrs(cfg *nodeconfig.Config) reservedAddrs {
	r := reservedAddrs{}
	if a, err := netip.ParseAddr(cfg.Cluster.VIP); err == nil {
		r[a] = "cluster.vip"
	}
	for i, n := range cfg.Cluster.Nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil && n.Name != cfg.Hostname {
			r[a] = fmt.Sprintf("cluster.nodes[%d].address (%s)", i, n.Name)
		}
	}
	return r
}

// checkReply turns a DHCP offer or ACK into the lease it describes, with
// the values it clamped or dropped, or refuses it with a *LeaseError. The
// lease's Obtained is left for the caller.
func checkReply(ifname string, m *dhcpv4.DHCPv4, reserved reservedAddrs) (*Lease, []adjustment, error) {
	l := &Lease{Iface: ifname}
	l.Server, _ = netip.AddrFromSlice(m.ServerIdentifier().To4())
	var bad *refusal
	l.Addr, bad = replyPrefix(m)
	if bad == nil {
		bad = checkHostAddr(l.Addr, reserved)
	}
	if bad == nil {
		l.Router, bad = replyRouter(m, l.Addr)
	}
	if bad != nil {
		return nil, nil, &LeaseError{Iface: ifname, Server: l.Server, Field: bad.field, Value: bad.value, Reason: bad.reason}
	}
	var adj []adjustment
	l.Duration, l.Renew, adj = replyTimes(m)
	l.DNS, adj = replyDNS(m, adj)
	return l, adj, nil
}

// refusal is why a field refuses a reply.
type refusal struct{ field, value, reason string }

// replyPrefix is the offered address with the reply's prefix length.
func replyPrefix(m *dhcpv4.DHCPv4) (netip.Prefix, *refusal) {
	addr, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
	if !ok {
		return netip.Prefix{}, &refusal{"yiaddr", m.YourIPAddr.String(), "not an IPv4 address"}
	}
	if !m.Options.Has(dhcpv4.OptionSubnetMask) {
		return netip.PrefixFrom(addr, defaultPrefixLen), nil
	}
	mask := m.SubnetMask()
	if mask == nil {
		return netip.Prefix{}, &refusal{"subnet mask", fmt.Sprintf("%x", m.Options.Get(dhcpv4.OptionSubnetMask)), "malformed (want 4 bytes)"}
	}
	ones, size := mask.Size()
	value, _ := netip.AddrFromSlice(mask)
	switch {
	case size == 0:
		return netip.Prefix{}, &refusal{"subnet mask", value.String(), "not contiguous"}
	case ones < minPrefixLen || ones > maxPrefixLen:
		return netip.Prefix{}, &refusal{"subnet mask", value.String(),
			fmt.Sprintf("/%d is not a host lease's subnet (want /%d to /%d)", ones, minPrefixLen, maxPrefixLen)}
	}
	return netip.PrefixFrom(addr, ones), nil
}

// checkHostAddr refuses p's address when it cannot be this node's.
func checkHostAddr(p netip.Prefix, reserved reservedAddrs) *refusal {
	if reason := badHostAddr(p, reserved); reason != "" {
		return &refusal{"yiaddr", p.Addr().String(), reason}
	}
	return nil
}

// badHostAddr says why p's address cannot be this node's, or "".
func badHostAddr(p netip.Prefix, reserved reservedAddrs) string {
	a := p.Addr()
	switch {
	case a.As4()[0] == 0:
		return "is in 0.0.0.0/8 (this network)"
	case a.IsLoopback():
		return "is a loopback address"
	case a.IsMulticast():
		return "is a multicast address"
	case a == limitedBroadcast:
		return "is the broadcast address"
	case a.As4()[0] >= 240:
		return "is in 240.0.0.0/4 (reserved)"
	case a.IsLinkLocalUnicast():
		return "is a link-local address"
	case a == p.Masked().Addr():
		return "is the network address of " + p.Masked().String()
	case a == broadcast(p):
		return "is the broadcast address of " + p.Masked().String()
	}
	if field, ok := reserved[a]; ok {
		return "is the cluster's " + field + " in the node config"
	}
	return ""
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// replyRouter is the reply's first router (none is the zero Addr). A
// router the node cannot reach on-link, or that is the node itself, would
// leave it a default route that black-holes its traffic, so it refuses
// the reply.
func replyRouter(m *dhcpv4.DHCPv4, self netip.Prefix) (netip.Addr, *refusal) {
	if !m.Options.Has(dhcpv4.OptionRouter) {
		return netip.Addr{}, nil
	}
	rs := m.Router()
	if len(rs) == 0 {
		return netip.Addr{}, &refusal{"router", fmt.Sprintf("%x", m.Options.Get(dhcpv4.OptionRouter)), "malformed (want 4-byte addresses)"}
	}
	r, _ := netip.AddrFromSlice(rs[0].To4())
	subnet := self.Masked()
	switch {
	case r == self.Addr():
		return r, &refusal{"router", r.String(), "is the offered address itself"}
	case !subnet.Contains(r):
		return r, &refusal{"router", r.String(), "is outside the offered subnet " + subnet.String()}
	case r == subnet.Addr() || r == broadcast(self):
		return r, &refusal{"router", r.String(), "is the network or broadcast address of " + subnet.String()}
	}
	return r, nil
}

// replyTimes are the lease time and T1 with the bounds applied.
func replyTimes(m *dhcpv4.DHCPv4) (lease, renew time.Duration, adj []adjustment) {
	sent := m.IPAddressLeaseTime(defaultLeaseTime)
	lease = min(max(sent, minLeaseTime), maxLeaseTime)
	if lease != sent {
		adj = append(adj, adjustment{"lease time", sent.String(), lease.String()})
	}
	renew = m.IPAddressRenewalTime(lease / 2)
	if renew <= 0 || renew >= lease {
		if m.Options.Has(dhcpv4.OptionRenewTimeValue) {
			adj = append(adj, adjustment{"renewal time (T1)", renew.String(), (lease / 2).String()})
		}
		renew = lease / 2
	}
	return lease, renew, adj
}

// replyDNS is the reply's name servers less the ones no resolver can use
// (loopback would point the node at itself, unspecified, multicast or
// broadcast at nothing), at most maxLeaseDNS.
func replyDNS(m *dhcpv4.DHCPv4, adj []adjustment) ([]string, []adjustment) {
	if m.Options.Has(dhcpv4.OptionDomainNameServer) && len(m.DNS()) == 0 {
		adj = append(adj, adjustment{"dns", fmt.Sprintf("%x", m.Options.Get(dhcpv4.OptionDomainNameServer)), "none (malformed)"})
	}
	var out []string
	for _, ip := range m.DNS() {
		a, _ := netip.AddrFromSlice(ip.To4())
		switch {
		case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a == limitedBroadcast:
			adj = append(adj, adjustment{"dns", a.String(), "dropped (not a usable server address)"})
		case slices.Contains(out, a.String()):
		case len(out) == maxLeaseDNS:
			adj = append(adj, adjustment{"dns", a.String(), fmt.Sprintf("dropped (more than %d servers)", maxLeaseDNS)})
		default:
			out = append(out, a.String())
		}
	}
	return out, adj
}
