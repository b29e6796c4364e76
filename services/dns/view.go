package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/nodeconfig"
)

// ClusterView is the cluster's current VIP and members as the cluster
// daemon publishes them (a JSON file it writes atomically); it overrides
// the node config's cluster.nodes, and cluster.vip when it has one.
//
//	{"vip": "192.0.2.10", "nodes": [{"name": "mail-a", "address": "192.0.2.11"}]}
type ClusterView struct {
	VIP   string            `json:"vip"`
	Nodes []nodeconfig.Node `json:"nodes"`
	// TXT are text records of the cluster domain (its DKIM key).
	TXT []TXT `json:"txt,omitempty"`
}

// maxTXT bounds one text record's text.
const maxTXT = 4096

// ErrBadView is wrapped by every error about a cluster view.
var ErrBadView = errors.New("invalid cluster view")

// LoadClusterView decodes a view strictly; name prefixes every error.
func LoadClusterView(r io.Reader, name string) (*ClusterView, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var v ClusterView
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrBadView, err)
	}
	if a, err := netip.ParseAddr(v.VIP); v.VIP != "" && (err != nil || !a.Is4()) {
		return nil, fmt.Errorf("%s: %w: vip: %q is not an IPv4 address", name, ErrBadView, v.VIP)
	}
	for i, t := range v.TXT {
		if _, ok := mdns.IsDomainName(t.Name); !ok || t.Name == "" || strings.HasSuffix(t.Name, ".") {
			return nil, fmt.Errorf("%s: %w: txt[%d].name: %q is not a name relative to the domain", name, ErrBadView, i, t.Name)
		}
		if len(t.Text) == 0 || len(t.Text) > maxTXT || strings.ContainsFunc(t.Text, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return nil, fmt.Errorf("%s: %w: txt[%d].text: want 1 to %d printable ASCII characters", name, ErrBadView, i, maxTXT)
		}
	}
	for i, n := range v.Nodes {
		if n.Name == "" {
			return nil, fmt.Errorf("%s: %w: nodes[%d].name: is required", name, ErrBadView, i)
		}
		if _, err := netip.ParseAddr(n.Address); err != nil {
			return nil, fmt.Errorf("%s: %w: nodes[%d].address: %q is not an IP address", name, ErrBadView, i, n.Address)
		}
	}
	return &v, nil
}

// ZoneOf builds the zone from the node config and, when not nil, the
// cluster daemon's view.
func ZoneOf(c *nodeconfig.Config, v *ClusterView) Zone {
	cl := c.Cluster
	if v != nil {
		cl.Nodes = v.Nodes
		if v.VIP != "" { // an arbitrator's daemon knows no VIP
			cl.VIP = v.VIP
		}
	}
	z := Zone{Domain: cl.Domain, Service: cl.Service, VIP: cl.VIPAddr(), TTL: c.DNS.TTL}
	if v != nil {
		z.TXT = v.TXT
	}
	for _, n := range cl.Nodes {
		z.Members = append(z.Members, Member{Name: n.Name, Addr: n.Addr()})
	}
	if z.TTL == 0 {
		z.TTL = time.Minute
	}
	return z
}

// ConfigOf is the server configuration of the node config's dns section.
func ConfigOf(c *nodeconfig.Config) Config {
	rl := c.DNS.RateLimit
	return Config{
		Policy:      PolicyOf(c),
		CacheSize:   c.DNS.CacheSize,
		MaxUpstream: c.DNS.MaxUpstream,
		RateLimit:   RateLimit{PerSecond: rl.ResponsesPerSecond, Slip: rl.Slip, MaxSources: rl.MaxSources},
	}
}

// PolicyOf is the policy of the node config's dns section, which a reload
// replaces.
func PolicyOf(c *nodeconfig.Config) Policy {
	return Policy{Allow: c.DNS.AllowedNets(), Forwarders: c.DNS.ForwarderAddrs(), OpenResolver: c.DNS.OpenResolver}
}
