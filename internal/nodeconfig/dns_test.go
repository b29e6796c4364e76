package nodeconfig

import (
	"errors"
	"strings"
	"testing"
)

// dnsNode is a data node of a well-formed cluster without its dns
// section; the dns cases of TestDNSRules append one (from line 12 on).
const dnsNode = `hostname: data-a
cluster:
  name: c
  domain: mail.example.org
  vip: 10.77.0.10
  nodes:
    - {name: data-a, address: 10.77.0.11}
    - {name: data-b, address: 10.77.0.12}
    - {name: arb, address: 10.77.0.13, role: arbitrator}
network:
  links: [{name: eth0, addresses: [10.77.0.11/24, "2001:db8::11/64"]}, {name: eth1, addresses: [192.168.5.1/24]}]
`

// dnsSection is a dns section of a listen line, a forwarders line and an
// allow line (lines 13, 14 and 15 of the file).
func dnsSection(listen, forwarders, allow string, more ...string) string {
	return dnsNode + "dns:\n  listen: " + listen + "\n  forwarders: " + forwarders + "\n  allow: " + allow + "\n" + strings.Join(more, "")
}

const (
	wildcard = `["0.0.0.0:53"]`
	gateway  = `[10.77.0.1]`
	lan      = `[10.77.0.0/24]`
)

// The dns section refuses forwarders that lead back to a tandem-dns, a
// network of every address without dns.open_resolver, and abuse limits out
// of bounds, each on the line of its field.
func TestDNSRules(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		// The example of docs/node-config.md.
		{"doc: member", dnsSection(wildcard, `[10.77.0.11]`, lan),
			"n.yaml:14: dns.forwarders[0]: 10.77.0.11 is this cluster's member data-a: forwarding to it loops"},
		{"member", dnsSection(wildcard, `[10.77.0.12]`, lan),
			"n.yaml:14: dns.forwarders[0]: 10.77.0.12 is this cluster's member data-b: forwarding to it loops"},
		{"member on another port", dnsSection(wildcard, `["10.77.0.11:5353"]`, lan),
			"n.yaml:14: dns.forwarders[0]: 10.77.0.11:5353 is this cluster's member data-a: forwarding to it loops"},
		{"vip", dnsSection(wildcard, `[10.77.0.10]`, lan),
			"n.yaml:14: dns.forwarders[0]: 10.77.0.10 is this cluster's VIP (cluster.vip): forwarding to it loops"},
		{"second forwarder", dnsSection(wildcard, `[10.77.0.1, "10.77.0.10:53"]`, lan),
			"n.yaml:14: dns.forwarders[1]: 10.77.0.10:53 is this cluster's VIP (cluster.vip): forwarding to it loops"},
		{"loopback, listening on every address", dnsSection(wildcard, `[127.0.0.1]`, lan),
			`n.yaml:14: dns.forwarders[0]: 127.0.0.1 is this server (dns.listen[0] "0.0.0.0:53"): forwarding to it loops`},
		{"loopback, listening elsewhere on its port", dnsSection(`["192.168.5.1:5300"]`, `["127.0.0.2:5300"]`, lan),
			`n.yaml:14: dns.forwarders[0]: 127.0.0.2:5300 is this server (dns.listen[0] "192.168.5.1:5300"): forwarding to it loops`},
		{"unspecified", dnsSection(`[":53"]`, `[0.0.0.0]`, lan),
			`n.yaml:14: dns.forwarders[0]: 0.0.0.0 is this server (dns.listen[0] ":53"): forwarding to it loops`},
		{"IPv6 unspecified", dnsSection(`["192.168.5.1:53"]`, `["::"]`, lan),
			`n.yaml:14: dns.forwarders[0]: :: is this server (dns.listen[0] "192.168.5.1:53"): forwarding to it loops`},
		{"the listen address", dnsSection(`["127.0.0.1:53", "192.168.5.1:53"]`, `[192.168.5.1]`, lan),
			`n.yaml:14: dns.forwarders[0]: 192.168.5.1 is this server (dns.listen[1] "192.168.5.1:53"): forwarding to it loops`},
		{"a static address, listening on every address", dnsSection(`[":53"]`, `[192.168.5.1]`, lan),
			`n.yaml:14: dns.forwarders[0]: 192.168.5.1 is this server (dns.listen[0] ":53", every address of this node: eth1 has it): forwarding to it loops`},
		{"a static address, listening on 0.0.0.0", dnsSection(wildcard, `[192.168.5.1]`, lan),
			`n.yaml:14: dns.forwarders[0]: 192.168.5.1 is this server (dns.listen[0] "0.0.0.0:53", every address of this node: eth1 has it): forwarding to it loops`},
		{"IPv6 loopback", dnsSection(`["[::]:53"]`, `["[::1]:53"]`, lan),
			`n.yaml:14: dns.forwarders[0]: [::1]:53 is this server (dns.listen[0] "[::]:53"): forwarding to it loops`},
		{"IPv6 static address", dnsSection(`["[::]:53"]`, `["2001:db8::11"]`, lan),
			`n.yaml:14: dns.forwarders[0]: 2001:db8::11 is this server (dns.listen[0] "[::]:53", every address of this node: eth0 has it): forwarding to it loops`},
		{"listen port by name", dnsSection(`[":domain"]`, gateway, lan),
			`n.yaml:13: dns.listen[0]: ":domain": the port is not a number from 0 to 65535`},
		{"every IPv4 address", dnsSection(wildcard, gateway, `[0.0.0.0/0]`),
			`n.yaml:15: dns.allow[0]: "0.0.0.0/0" is every IPv4 address: the world could query this server, and with dns.forwarders use it as its resolver; set dns.open_resolver: true if that is meant`},
		{"every IPv6 address", dnsSection(wildcard, "[]", `[10.77.0.0/24, "::/0"]`),
			`n.yaml:15: dns.allow[1]: "::/0" is every IPv6 address`},
		{"every address, written otherwise", dnsSection(wildcard, gateway, `[10.0.0.0/0]`),
			`n.yaml:15: dns.allow[0]: "10.0.0.0/0" is every IPv4 address`},
		{"open_resolver false", dnsSection(wildcard, gateway, `[0.0.0.0/0]`, "  open_resolver: false\n"),
			`dns.allow[0]: "0.0.0.0/0" is every IPv4 address`},
		{"max_upstream negative", dnsSection(wildcard, gateway, lan, "  max_upstream: -1\n"),
			"n.yaml:16: dns.max_upstream: -1: want 1 to 4096"},
		{"max_upstream too many", dnsSection(wildcard, gateway, lan, "  max_upstream: 4097\n"),
			"n.yaml:16: dns.max_upstream: 4097: want 1 to 4096"},
		{"rate negative", dnsSection(wildcard, gateway, lan, "  rate_limit: {responses_per_second: -5}\n"),
			"n.yaml:16: dns.rate_limit.responses_per_second: -5: want 1 to 1000000"},
		{"rate too high", dnsSection(wildcard, gateway, lan, "  rate_limit:\n    responses_per_second: 1000001\n"),
			"n.yaml:17: dns.rate_limit.responses_per_second: 1000001: want 1 to 1000000"},
		{"slip too high", dnsSection(wildcard, gateway, lan, "  rate_limit: {slip: 11}\n"),
			"n.yaml:16: dns.rate_limit.slip: 11: want 1 to 10"},
		{"slip negative", dnsSection(wildcard, gateway, lan, "  rate_limit: {slip: -1}\n"),
			"n.yaml:16: dns.rate_limit.slip: -1: want 1 to 10"},
		{"max_sources too many", dnsSection(wildcard, gateway, lan, "  rate_limit: {max_sources: 1048577}\n"),
			"n.yaml:16: dns.rate_limit.max_sources: 1048577: want 1 to 1048576"},
		{"rate_limit typo", dnsSection(wildcard, gateway, lan, "  rate_limit: {rps: 5}\n"),
			`n.yaml:16: unknown field "rps" in dns.rate_limit (expected one of: max_sources, responses_per_second, slip)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml), "n.yaml")
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(\n%s) = %v, want ErrInvalid with %q", tc.yaml, err, tc.want)
			}
		})
	}
}

// The edges of each dns rule load.
func TestDNSRulesAccept(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"a gateway", dnsSection(wildcard, gateway, lan)},
		{"loopback on another port", dnsSection(wildcard, `["127.0.0.1:5353"]`, lan)},
		{"a static address on another port", dnsSection(wildcard, `["192.168.5.1:5353"]`, lan)},
		{"a static address not listened on", dnsSection(`["127.0.0.1:53"]`, `[192.168.5.1]`, lan)},
		{"every address, meant", dnsSection(wildcard, gateway, `[0.0.0.0/0, "::/0"]`, "  open_resolver: true\n")},
		{"limits at their least", dnsSection(wildcard, gateway, lan, "  max_upstream: 1\n  rate_limit: {responses_per_second: 1, slip: 1, max_sources: 1}\n")},
		{"limits at their most", dnsSection(wildcard, gateway, lan, "  max_upstream: 4096\n  rate_limit: {responses_per_second: 1000000, slip: 10, max_sources: 1048576}\n")},
		{"no cluster yet", "hostname: kvm-node\ndns:\n  listen: [\"0.0.0.0:53\"]\n  forwarders: [10.0.2.3]\n  allow: [10.0.2.0/24]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load(strings.NewReader(tc.yaml), "n.yaml"); err != nil {
				t.Errorf("Load(\n%s) = %v, want no error", tc.yaml, err)
			}
		})
	}
}

func TestDNSDefaults(t *testing.T) {
	c, err := Load(strings.NewReader("hostname: n1\n"), "n.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := c.DNS
	want := RateLimit{ResponsesPerSecond: DefaultDNSRate, Slip: DefaultDNSSlip, MaxSources: DefaultDNSMaxSources}
	if d.MaxUpstream != 64 || d.RateLimit != want || d.RateLimit.ResponsesPerSecond != 100 || d.RateLimit.Slip != 2 || d.OpenResolver {
		t.Errorf("dns defaults = max_upstream %d, rate_limit %+v, open_resolver %v; want 64, %+v, false", d.MaxUpstream, d.RateLimit, d.OpenResolver, want)
	}
}
