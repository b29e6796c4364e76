package nodeconfig

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"tandem/internal/yamlstrict"
)

// bad is an error about field, placed on its line by Load.
var bad = yamlstrict.Errorf

// validate checks meaning and cross-field rules; it returns every problem.
func (c *Config) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkLabel("hostname", c.Hostname, true))
	errs = append(errs, c.Cluster.validate()...)
	errs = append(errs, c.Network.validate()...)
	errs = append(errs, c.Time.validate()...)
	errs = append(errs, c.DNS.validate(c.Cluster.Domain != "")...)
	return errors.Join(errs...)
}

func (c *Cluster) validate() []error {
	var errs []error
	if c.Domain == "" && c.VIP == "" && len(c.Nodes) == 0 && c.Name == "" {
		return nil // a node before pairing: no cluster yet
	}
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkLabel("cluster.name", c.Name, false))
	add(checkDomain("cluster.domain", c.Domain))
	add(checkLabel("cluster.service", c.Service, true))
	if c.VIP != "" {
		if a, err := netip.ParseAddr(c.VIP); err != nil || !a.Is4() {
			add(bad("cluster.vip", "%q is not an IPv4 address", c.VIP))
		}
	}
	seen := map[string]bool{}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("cluster.nodes[%d]", i)
		add(checkLabel(f+".name", n.Name, true))
		if seen[n.Name] {
			add(bad(f+".name", "%q listed twice", n.Name))
		}
		seen[n.Name] = true
		if _, err := netip.ParseAddr(n.Address); err != nil {
			add(bad(f+".address", "%q is not an IP address", n.Address))
		}
		if n.Role != "" && n.Role != "data" && n.Role != "arbitrator" {
			add(bad(f+".role", "%q: want data or arbitrator", n.Role))
		}
	}
	if c.LeaseTTL != 0 && (c.LeaseTTL < 2*time.Second || c.LeaseTTL%time.Second != 0) {
		add(bad("cluster.lease_ttl", "%v: want whole seconds, at least 2s", c.LeaseTTL))
	}
	if p := c.Pairing; p != nil {
		if !seen[p.Founder] {
			add(bad("cluster.pairing.founder", "%q is not one of cluster.nodes", p.Founder))
		}
		for i, code := range append(p.Codes, p.Code) {
			f := fmt.Sprintf("cluster.pairing.codes[%d]", i)
			if i == len(p.Codes) {
				f = "cluster.pairing.code"
			}
			if code != "" && !codeRE.MatchString(code) {
				add(bad(f, "%q: want a code like ABCD-EFGH-JKLM-NPQR", code))
			}
		}
	}
	return errs
}

// codeRE is a pairing code's form (services/cluster checks the alphabet).
var codeRE = regexp.MustCompile(`^[A-Za-z0-9]{4}(-?[A-Za-z0-9]{4}){3}$`)

func (n *Network) validate() []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	names := map[string]string{} // interface name -> field that defines it
	define := func(field, name string) {
		if err := checkIfName(field+".name", name); err != nil {
			add(err)
			return
		}
		if prev, ok := names[name]; ok {
			add(bad(field+".name", "%q already defined by %s", name, prev))
			return
		}
		names[name] = field
	}
	for i, l := range n.Links {
		f := fmt.Sprintf("network.links[%d]", i)
		define(f, l.Name)
		if l.MAC != "" {
			if hw, err := net.ParseMAC(l.MAC); err != nil || len(hw) != 6 {
				add(bad(f+".mac", "%q is not an Ethernet MAC address", l.MAC))
			}
		}
		errs = append(errs, l.Addressing.validate(f)...)
	}
	enslaved := map[string]string{}
	for i, b := range n.Bonds {
		f := fmt.Sprintf("network.bonds[%d]", i)
		define(f, b.Name)
		if len(b.Members) == 0 {
			add(bad(f+".members", "a bond needs at least one member"))
		}
		for j, m := range b.Members {
			mf := fmt.Sprintf("%s.members[%d]", f, j)
			if !n.isLink(m) {
				add(bad(mf, "%q is not in network.links", m))
			}
			if prev, ok := enslaved[m]; ok {
				add(bad(mf, "%q is already a member of %s", m, prev))
			}
			enslaved[m] = b.Name
		}
		if b.Primary != "" && !contains(b.Members, b.Primary) {
			add(bad(f+".primary", "%q is not one of the members", b.Primary))
		}
		if b.MIIMon < 0 || b.MIIMon%1_000_000 != 0 {
			add(bad(f+".miimon", "%s is not a whole, positive number of milliseconds", b.MIIMon))
		}
		errs = append(errs, b.Addressing.validate(f)...)
	}
	for i, l := range n.Links {
		if bond, ok := enslaved[l.Name]; ok && (l.DHCP || len(l.Addresses) > 0) {
			add(bad(fmt.Sprintf("network.links[%d]", i), "%q is a member of %s and cannot carry addresses", l.Name, bond))
		}
	}
	for i, v := range n.VLANs {
		f := fmt.Sprintf("network.vlans[%d]", i)
		define(f, v.Name)
		if _, ok := names[v.Link]; !ok || strings.HasPrefix(names[v.Link], "network.vlans") {
			add(bad(f+".link", "%q is not a link or bond defined above", v.Link))
		}
		if v.ID < 1 || v.ID > 4094 {
			add(bad(f+".id", "%d is not a VLAN ID (1 to 4094)", v.ID))
		}
		errs = append(errs, v.Addressing.validate(f)...)
	}
	for i, r := range n.Routes {
		errs = append(errs, r.validate(fmt.Sprintf("network.routes[%d]", i), names)...)
	}
	for i, s := range n.Nameservers {
		if _, err := netip.ParseAddr(s); err != nil {
			add(bad(fmt.Sprintf("network.nameservers[%d]", i), "%q is not an IP address", s))
		}
	}
	for i, s := range n.Search {
		add(checkDomain(fmt.Sprintf("network.search[%d]", i), s))
	}
	return errs
}

func (n *Network) isLink(name string) bool {
	for _, l := range n.Links {
		if l.Name == name {
			return true
		}
	}
	return false
}

func (a *Addressing) validate(f string) []error {
	var errs []error
	if a.MTU != 0 && (a.MTU < 68 || a.MTU > 65535) {
		errs = append(errs, bad(f+".mtu", "%d is out of range (68 to 65535)", a.MTU))
	}
	for i, s := range a.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, bad(fmt.Sprintf("%s.addresses[%d]", f, i), "%q is not an address in CIDR form", s))
			continue
		}
		if p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
			errs = append(errs, bad(fmt.Sprintf("%s.addresses[%d]", f, i), "%q is not a host address", s))
		}
	}
	return errs
}

func (r *Route) validate(f string, names map[string]string) []error {
	var errs []error
	to, err := netip.ParsePrefix(r.To)
	if err != nil {
		errs = append(errs, bad(f+".to", "%q is not a destination in CIDR form", r.To))
	}
	if r.Via != "" {
		via, err := netip.ParseAddr(r.Via)
		if err != nil {
			errs = append(errs, bad(f+".via", "%q is not an IP address", r.Via))
		} else if to.IsValid() && via.Is4() != to.Addr().Is4() {
			errs = append(errs, bad(f+".via", "%q is not of the same family as %q", r.Via, r.To))
		}
	} else if r.Dev == "" {
		errs = append(errs, bad(f+".dev", "an on-link route (no via) needs dev"))
	}
	if _, ok := names[r.Dev]; r.Dev != "" && !ok {
		errs = append(errs, bad(f+".dev", "%q is not an interface defined in network", r.Dev))
	}
	if r.Metric < 0 {
		errs = append(errs, bad(f+".metric", "%d is negative", r.Metric))
	}
	return errs
}

func (t *Time) validate() []error {
	var errs []error
	for i, s := range t.Servers {
		if s == "" || strings.ContainsAny(s, " /") {
			errs = append(errs, bad(fmt.Sprintf("time.servers[%d]", i), "%q is not a host or host:port", s))
		}
	}
	if t.StepThreshold < 0 {
		errs = append(errs, bad("time.step_threshold", "%s is negative", t.StepThreshold))
	}
	if t.PollInterval < 0 {
		errs = append(errs, bad("time.poll_interval", "%s is negative", t.PollInterval))
	}
	if t.MaxOffset < 0 {
		errs = append(errs, bad("time.max_offset", "%s is negative", t.MaxOffset))
	}
	return errs
}

func (d *DNS) validate(haveZone bool) []error {
	var errs []error
	for i, s := range d.Listen {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, bad(fmt.Sprintf("dns.listen[%d]", i), "%q is not host:port", s))
		}
	}
	for i, s := range d.Forwarders {
		if _, err := netip.ParseAddrPort(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				errs = append(errs, bad(fmt.Sprintf("dns.forwarders[%d]", i), "%q is not an IP address or address:port", s))
			}
		}
	}
	for i, s := range d.Allow {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs = append(errs, bad(fmt.Sprintf("dns.allow[%d]", i), "%q is not a network in CIDR form", s))
		}
	}
	if d.TTL < 0 || d.TTL%1_000_000_000 != 0 {
		errs = append(errs, bad("dns.ttl", "%s is not a whole, positive number of seconds", d.TTL))
	}
	if d.CacheSize < 0 {
		errs = append(errs, bad("dns.cache_size", "%d is negative", d.CacheSize))
	}
	return errs
}

func checkLabel(field, s string, required bool) error {
	if s == "" {
		if required {
			return bad(field, "is required")
		}
		return nil
	}
	if len(s) > 63 || !isLabel(s) {
		return bad(field, "%q is not a DNS label (letters, digits, '-', at most 63)", s)
	}
	return nil
}

func checkDomain(field, s string) error {
	if s == "" {
		return bad(field, "is required")
	}
	s = strings.TrimSuffix(s, ".")
	if len(s) > 253 {
		return bad(field, "%q is longer than 253 characters", s)
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) > 63 || !isLabel(l) {
			return bad(field, "%q is not a domain name", s)
		}
	}
	return nil
}

func isLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func checkIfName(field, s string) error {
	if s == "" {
		return bad(field, "is required")
	}
	if len(s) > 15 || strings.ContainsAny(s, "/: \t") {
		return bad(field, "%q is not an interface name (at most 15 characters, no '/', ':' or space)", s)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
