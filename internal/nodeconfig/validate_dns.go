package nodeconfig

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// The dns section's rules beyond the form of each field: the bounds of the
// abuse limits, no forwarder that leads back to this server or its
// cluster, and no allowed network of every address by accident.

// Bounds of dns.max_upstream (each query upstream holds a goroutine and a
// socket) and dns.rate_limit (BIND's ranges; 2^20 networks are some
// 100 MiB).
const (
	maxDNSUpstream = 4096
	maxDNSRate     = 1_000_000
	maxDNSSlip     = 10
	maxDNSSources  = 1 << 20
)

// validateLimits checks dns.max_upstream and dns.rate_limit, defaults
// filled in.
func (d *DNS) validateLimits() []error {
	var errs []error
	check := func(field string, v, most int) {
		if v < 1 || v > most {
			errs = append(errs, bad(field, "%d: want 1 to %d", v, most))
		}
	}
	check("dns.max_upstream", d.MaxUpstream, maxDNSUpstream)
	check("dns.rate_limit.responses_per_second", d.RateLimit.ResponsesPerSecond, maxDNSRate)
	check("dns.rate_limit.slip", d.RateLimit.Slip, maxDNSSlip)
	check("dns.rate_limit.max_sources", d.RateLimit.MaxSources, maxDNSSources)
	return errs
}

// validateOpen refuses an allowed network of every address unless
// dns.open_resolver says it is meant: a slip of a prefix length must not
// make the node a resolver for the internet, and a reflector for attacks.
func (d *DNS) validateOpen() []error {
	if d.OpenResolver {
		return nil
	}
	var errs []error
	for i, s := range d.Allow {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Bits() != 0 {
			continue
		}
		family := "IPv4"
		if p.Addr().Is6() {
			family = "IPv6"
		}
		errs = append(errs, bad(fmt.Sprintf("dns.allow[%d]", i),
			"%q is every %s address: the world could query this server, and with dns.forwarders use it as its resolver; set dns.open_resolver: true if that is meant", s, family))
	}
	return errs
}

// validateListenPorts requires numeric ports in dns.listen, so that
// validateLoops knows them.
func (d *DNS) validateListenPorts() []error {
	var errs []error
	for i, s := range d.Listen {
		if _, port, err := net.SplitHostPort(s); err == nil {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				errs = append(errs, bad(fmt.Sprintf("dns.listen[%d]", i), "%q: the port is not a number from 0 to 65535", s))
			}
		}
	}
	return errs
}

// validateLoops refuses a forwarder that leads back to a tandem-dns: this
// server itself (an address it listens on with its port, loopback or the
// unspecified address with its port, any static address of the node when it
// listens on every address), a member of the cluster or the VIP (each
// serves this same zone, most likely with the same forwarders). An address
// the node gets later (DHCP, a newer cluster view) is caught when a query
// comes back (services/dns, loop.go).
func (d *DNS) validateLoops(c *Config) []error {
	var errs []error
	for i, s := range d.Forwarders {
		ap, ok := forwarderAddr(s)
		if !ok {
			continue // reported as malformed
		}
		if what := c.loopsTo(ap); what != "" {
			errs = append(errs, bad(fmt.Sprintf("dns.forwarders[%d]", i), "%s is %s: forwarding to it loops", s, what))
		}
	}
	return errs
}

// forwarderAddr parses a forwarder as ForwarderAddrs does.
func forwarderAddr(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), true
	}
	return netip.AddrPort{}, false
}

// loopsTo names the tandem-dns at ap, or returns "" when ap is none of
// this cluster's.
func (c *Config) loopsTo(ap netip.AddrPort) string {
	a := ap.Addr()
	for _, n := range c.Cluster.Nodes {
		if n.Addr().Unmap() == a {
			return "this cluster's member " + n.Name
		}
	}
	if c.Cluster.VIPAddr().Unmap() == a {
		return "this cluster's VIP (cluster.vip)"
	}
	for i, l := range c.DNS.Listen {
		host, port, err := net.SplitHostPort(l)
		if err != nil || port != strconv.Itoa(int(ap.Port())) {
			continue
		}
		if ok, how := c.listensOn(host, a); ok {
			return fmt.Sprintf("this server (dns.listen[%d] %q%s)", i, l, how)
		}
	}
	return ""
}

// listensOn reports whether a socket bound to host (an address, or empty
// or unspecified for every address) takes queries sent to a, and how when
// that is not plain. Loopback and the unspecified address reach the node
// itself, whatever host is.
func (c *Config) listensOn(host string, a netip.Addr) (bool, string) {
	if a.IsLoopback() || a.IsUnspecified() {
		return true, ""
	}
	h, err := netip.ParseAddr(host)
	switch {
	case err == nil && h.Unmap() == a:
		return true, ""
	case host != "" && (err != nil || !h.IsUnspecified()):
		return false, ""
	}
	for _, ifc := range c.Interfaces() {
		for _, p := range ifc.Prefixes() {
			if p.Addr().Unmap() == a {
				return true, ", every address of this node: " + ifc.Name + " has it"
			}
		}
	}
	return false, ""
}
