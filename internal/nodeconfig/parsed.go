package nodeconfig

import (
	"net"
	"net/netip"
)

// The accessors below parse fields that validate has already checked, so
// they never fail on a loaded Config.

// Prefixes returns the static addresses.
func (a Addressing) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(a.Addresses))
	for _, s := range a.Addresses {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// HardwareAddr returns the link's MAC match, or nil.
func (l Link) HardwareAddr() net.HardwareAddr {
	hw, _ := net.ParseMAC(l.MAC)
	return hw
}

// Destination returns the route's destination.
func (r Route) Destination() netip.Prefix {
	p, _ := netip.ParsePrefix(r.To)
	return p.Masked()
}

// Gateway returns the route's gateway, invalid for an on-link route.
func (r Route) Gateway() netip.Addr {
	a, _ := netip.ParseAddr(r.Via)
	return a
}

// VIPAddr returns the cluster's VIP, invalid if unset.
func (c Cluster) VIPAddr() netip.Addr {
	a, _ := netip.ParseAddr(c.VIP)
	return a
}

// Addr returns the member's address.
func (n Node) Addr() netip.Addr {
	a, _ := netip.ParseAddr(n.Address)
	return a
}

// AllowedNets returns the networks the DNS server answers.
func (d DNS) AllowedNets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range d.Allow {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// ForwarderAddrs returns the upstream resolvers as address:port (port 53
// when the file gave none).
func (d DNS) ForwarderAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range d.Forwarders {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53))
		}
	}
	return out
}

// Interface is a configured interface (link, bond or VLAN) with its
// addressing.
type Interface struct {
	Name string
	Addressing
}

// Interfaces lists every configured interface in the order they are
// brought up: links, bonds, VLANs.
func (c *Config) Interfaces() []Interface {
	var out []Interface
	for _, l := range c.Network.Links {
		out = append(out, Interface{l.Name, l.Addressing})
	}
	for _, b := range c.Network.Bonds {
		out = append(out, Interface{b.Name, b.Addressing})
	}
	for _, v := range c.Network.VLANs {
		out = append(out, Interface{v.Name, v.Addressing})
	}
	return out
}
