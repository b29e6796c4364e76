package nodeconfig

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"tandem/internal/passwd"
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
	add(checkName("hostname", c.Hostname, true))
	errs = append(errs, c.Cluster.validate()...)
	errs = append(errs, c.validateMember()...)
	errs = append(errs, c.Network.validate()...)
	errs = append(errs, c.Time.validate()...)
	errs = append(errs, c.DNS.validate(c)...)
	if c.Console.Password != "" {
		if err := passwd.Valid(c.Console.Password); err != nil {
			add(bad("console.password", "%v", err)) // the hash is not quoted: it is a secret's
		}
	}
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
	add(checkName("cluster.name", c.Name, false))
	add(checkDomain("cluster.domain", c.Domain))
	add(checkLabel("cluster.service", c.Service, true))
	if c.VIP != "" {
		add(checkIPv4("cluster.vip", c.VIP))
	}
	seen := map[string]bool{}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("cluster.nodes[%d]", i)
		add(checkName(f+".name", n.Name, true))
		if seen[n.Name] {
			add(bad(f+".name", "%q listed twice", n.Name))
		}
		seen[n.Name] = true
		add(checkIPv4(f+".address", n.Address))
		if n.Role != "" && n.Role != "data" && n.Role != "arbitrator" {
			add(bad(f+".role", "%q: want data or arbitrator", n.Role))
		}
		if n.Fence != nil {
			if n.Role == "arbitrator" {
				add(bad(f+".fence", "an arbitrator is never fenced (it never runs the group)"))
			}
			errs = append(errs, n.Fence.validate(f+".fence")...)
		}
	}
	errs = append(errs, c.validateAddresses()...)
	add(c.validateShape())
	add(checkLeaseTTL(c.LeaseTTL))
	if p := c.Pairing; p != nil {
		if !seen[p.Founder] {
			add(bad("cluster.pairing.founder", "%q is not one of cluster.nodes", p.Founder))
		}
		for _, name := range slices.Sorted(maps.Keys(p.Codes)) {
			f := "cluster.pairing.codes." + name
			add(checkLabel(f, name, true))
			if name == p.Founder {
				add(bad(f, "the founder needs no code"))
			}
			if !codeRE.MatchString(p.Codes[name]) {
				add(bad(f, "%q: want a code like ABCD-EFGH-JKLM-NPQR", p.Codes[name]))
			}
		}
		if p.Code != "" && !codeRE.MatchString(p.Code) {
			add(bad("cluster.pairing.code", "%q: want a code like ABCD-EFGH-JKLM-NPQR", p.Code))
		}
	}
	return errs
}

// IPMI's limits: a user name of 16 bytes, cipher suites 0 to 17.
const (
	maxIPMIUser        = 16
	maxIPMICipherSuite = 17
)

func (f *Fence) validate(field string) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch f.Agent {
	case "ipmi":
	case "libvirt":
		return []error{bad(field+".agent", "libvirt: not yet (ipmi is)")}
	default:
		return []error{bad(field+".agent", "%q: want ipmi", f.Agent)}
	}
	switch {
	case f.Address == "":
		add(bad(field+".address", "required: the BMC's address"))
	case net.ParseIP(f.Address) != nil:
		add(checkIPv4(field+".address", f.Address))
	default:
		add(checkDomain(field+".address", f.Address))
	}
	if f.Port < 0 || f.Port > 65535 {
		add(bad(field+".port", "%d: want 1 to 65535 (0: 623)", f.Port))
	}
	if f.User == "" || len(f.User) > maxIPMIUser {
		add(bad(field+".user", "%q: want a BMC user of 1 to %d bytes", f.User, maxIPMIUser))
	}
	if !strings.HasPrefix(f.PasswordFile, "/") {
		add(bad(field+".password_file", "%q: want an absolute path (a 0600 file on the peer)", f.PasswordFile))
	}
	if f.CipherSuite < 0 || f.CipherSuite > maxIPMICipherSuite {
		add(bad(field+".cipher_suite", "%d: want 0 to %d (0: 3)", f.CipherSuite, maxIPMICipherSuite))
	}
	return errs
}

// Bounds of cluster.lease_ttl: etcd's shortest lease, and a failover
// (about lease_ttl) of two minutes at most; the watchdog gets half of it.
const (
	minLeaseTTL = 2 * time.Second
	maxLeaseTTL = 120 * time.Second
)

func checkLeaseTTL(d time.Duration) error {
	if d != 0 && (d < minLeaseTTL || d > maxLeaseTTL || d%time.Second != 0) {
		return bad("cluster.lease_ttl", "%v: want whole seconds from %v to %v", d, minLeaseTTL, maxLeaseTTL)
	}
	return nil
}

// validateAddresses refuses an address used twice: by two members, or by a
// member and the VIP (which moves between the data nodes, so it can be
// none of theirs).
func (c *Cluster) validateAddresses() []error {
	var errs []error
	owner := map[netip.Addr]string{} // address -> the field that has it
	for i, n := range c.Nodes {
		f := fmt.Sprintf("cluster.nodes[%d].address", i)
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			continue // checkIPv4 reported it
		}
		if prev, ok := owner[a]; ok {
			errs = append(errs, bad(f, "%q is also %s", n.Address, prev))
			continue
		}
		owner[a] = f
	}
	if a, err := netip.ParseAddr(c.VIP); err == nil && owner[a] != "" {
		errs = append(errs, bad("cluster.vip", "%q is also %s: the VIP is an address of its own", c.VIP, owner[a]))
	}
	return errs
}

// validateShape checks the cluster's shape, the only one tandem-cluster
// runs: two data nodes and one arbitrator.
func (c *Cluster) validateShape() error {
	if len(c.Nodes) == 0 {
		return nil
	}
	data, arbitrators := 0, 0
	for _, n := range c.Nodes {
		if n.Role == "arbitrator" {
			arbitrators++
		} else {
			data++
		}
	}
	if data != 2 || arbitrators != 1 {
		return bad("cluster.nodes", "want 2 data nodes and 1 arbitrator (role: arbitrator), have %d and %d", data, arbitrators)
	}
	return nil
}

// validateMember checks this node's place in its cluster, as the cluster
// daemon would at its first start: the node is one of cluster.nodes, and a
// data node has a static IPv4 address in the VIP's subnet (the VIP goes on
// that interface).
func (c *Config) validateMember() []error {
	cl := &c.Cluster
	if len(cl.Nodes) == 0 || c.Hostname == "" {
		return nil
	}
	i := slices.IndexFunc(cl.Nodes, func(n Node) bool { return n.Name == c.Hostname })
	if i < 0 {
		var names []string
		for _, n := range cl.Nodes {
			names = append(names, n.Name)
		}
		return []error{bad("hostname", "%q is not one of cluster.nodes (%s)", c.Hostname, strings.Join(names, ", "))}
	}
	if cl.Nodes[i].Role == "arbitrator" {
		return nil
	}
	vip, err := netip.ParseAddr(cl.VIP)
	switch {
	case cl.VIP == "":
		return []error{bad("cluster.vip", "is required: %s is a data node", c.Hostname)}
	case err != nil:
		return nil // checkIPv4 reported it
	}
	for _, ifc := range c.Interfaces() {
		for _, p := range ifc.Prefixes() {
			if p.Addr().Is4() && p.Masked().Contains(vip) {
				return nil
			}
		}
	}
	return []error{bad("cluster.vip", "%s is in no subnet of this node's static addresses (network.*.addresses); data node %s needs one", cl.VIP, c.Hostname)}
}

// codeRE is a pairing code's form: services/cluster's alphabet, which
// leaves out 0, 1, I and O (they read alike), either case.
var codeRE = regexp.MustCompile(`^(?i)[A-HJ-NP-Z2-9]{4}(-?[A-HJ-NP-Z2-9]{4}){3}$`)

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

func (d *DNS) validate(c *Config) []error {
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
	errs = append(errs, d.validateBounds()...)
	errs = append(errs, d.validateLimits()...)
	errs = append(errs, d.validateListenPorts()...)
	errs = append(errs, d.validateLoops(c)...)
	errs = append(errs, d.validateOpen()...)
	return errs
}

// Bounds of dns.ttl (a changed VIP or member reaches every resolver within
// a day at worst) and dns.cache_size (at most some 64 MiB of answers).
const (
	maxDNSTTL       = 24 * time.Hour
	maxDNSCacheSize = 65536
)

// validateBounds checks dns.ttl and dns.cache_size, defaults filled in.
func (d *DNS) validateBounds() []error {
	var errs []error
	if d.TTL < time.Second || d.TTL > maxDNSTTL || d.TTL%time.Second != 0 {
		errs = append(errs, bad("dns.ttl", "%s: want whole seconds from 1s to %s", d.TTL, maxDNSTTL))
	}
	if d.CacheSize < 1 || d.CacheSize > maxDNSCacheSize {
		errs = append(errs, bad("dns.cache_size", "%d: want 1 to %d answers", d.CacheSize, maxDNSCacheSize))
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

// nameRE is the cluster daemon's rule for its names (services/cluster):
// the host name and every name in cluster.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

func checkName(field, s string, required bool) error {
	if s == "" {
		if required {
			return bad(field, "is required")
		}
		return nil
	}
	if !nameRE.MatchString(s) {
		return bad(field, "%q is not a name (lower-case letters, digits and '-', not first or last, at most 32)", s)
	}
	return nil
}

// checkIPv4 requires a unicast IPv4 address another host can reach: the
// cluster's members and VIP are IPv4 (etcd, DRBD and the VIP agent).
func checkIPv4(field, s string) error {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil || !a.Is4():
		return bad(field, "%q is not an IPv4 address", s)
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return bad(field, "%q is not a host address other nodes can reach", s)
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
