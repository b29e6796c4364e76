package nodeconfig

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	c, err := LoadFile("testdata/example.yaml")
	if err != nil {
		t.Fatalf("LoadFile(example) = %v", err)
	}
	if c.Hostname != "mail-a" || c.Cluster.VIP != "192.0.2.10" || len(c.Cluster.Nodes) != 3 {
		t.Errorf("LoadFile(example) = %+v, want hostname mail-a, vip 192.0.2.10, 3 nodes", c)
	}
	if got := c.Network.Bonds[0].MIIMon; got != 100*time.Millisecond {
		t.Errorf("bonds[0].miimon = %v, want 100ms", got)
	}
	if got := c.Network.VLANs[0].Prefixes(); len(got) != 1 || got[0].String() != "198.51.100.11/24" {
		t.Errorf("vlans[0].Prefixes() = %v, want [198.51.100.11/24]", got)
	}
	if got := c.DNS.ForwarderAddrs(); len(got) != 1 || got[0].String() != "192.0.2.1:53" {
		t.Errorf("ForwarderAddrs() = %v, want [192.0.2.1:53]", got)
	}
}

// The documentation's example must be the tested one.
func TestDocExampleMatches(t *testing.T) {
	doc, err := os.ReadFile("../../docs/node-config.md")
	if err != nil {
		t.Fatalf("read doc: %v", err)
	}
	ex, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(ex)) {
		t.Errorf("docs/node-config.md does not contain testdata/example.yaml verbatim")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(strings.NewReader("hostname: n1\nnetwork:\n  links: [{name: eth0, dhcp: true}]\n  bonds: [{name: b0, members: [eth1]}]\n  links: [{name: eth0}, {name: eth1}]\n"), "n.yaml")
	if err == nil {
		t.Fatalf("Load(duplicate key) = %+v, want error", c)
	}
	c, err = Load(strings.NewReader("hostname: n1\nnetwork:\n  links: [{name: eth0}, {name: eth1}]\n  bonds: [{name: b0, members: [eth1, eth0]}]\n"), "n.yaml")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	b := c.Network.Bonds[0]
	if b.Primary != "eth1" || b.MIIMon != DefaultMIIMon {
		t.Errorf("bond defaults = primary %q miimon %v, want eth1 %v", b.Primary, b.MIIMon, DefaultMIIMon)
	}
	if c.Time.StepThreshold != DefaultStepThreshold || c.DNS.Listen[0] != DefaultDNSListen || c.Cluster.Service != "mail" {
		t.Errorf("defaults = %+v %+v", c.Time, c.DNS)
	}
}

func TestErrorsNameFileAndField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown field", "hostname: a\nhostnmae: b\n", `n.yaml:2: unknown field "hostnmae" (expected one of: cluster, console, dns, hostname, network, time)`},
		{"console password not a hash", "hostname: a\nconsole: {password: hunter2}\n", "n.yaml:2: console.password: not a PBKDF2-SHA512 hash in GRUB's notation"},
		{"missing hostname", "network: {}\n", "n.yaml: hostname: is required"},
		{"bad hostname", "hostname: a_b\n", `n.yaml:1: hostname: "a_b" is not a name (lower-case letters, digits and '-', not first or last, at most 32)`},
		{"bad address", "hostname: a\nnetwork:\n  links: [{name: eth0, addresses: [10.0.0.1/33]}]\n", `network.links[0].addresses[0]: "10.0.0.1/33" is not an address in CIDR form`},
		{"bad mac", "hostname: a\nnetwork:\n  links: [{name: eth0, mac: zz}]\n", `network.links[0].mac: "zz" is not an Ethernet MAC`},
		{"dup link", "hostname: a\nnetwork:\n  links: [{name: eth0}, {name: eth0}]\n", `network.links[1].name: "eth0" already defined by network.links[0]`},
		{"bond member unknown", "hostname: a\nnetwork:\n  bonds: [{name: b0, members: [eth9]}]\n", `network.bonds[0].members[0]: "eth9" is not in network.links`},
		{"bond primary", "hostname: a\nnetwork:\n  links: [{name: e0}]\n  bonds: [{name: b0, members: [e0], primary: e1}]\n", `network.bonds[0].primary: "e1" is not one of the members`},
		{"member with address", "hostname: a\nnetwork:\n  links: [{name: e0, dhcp: true}]\n  bonds: [{name: b0, members: [e0]}]\n", `network.links[0]: "e0" is a member of b0`},
		{"vlan id", "hostname: a\nnetwork:\n  links: [{name: e0}]\n  vlans: [{name: v, link: e0, id: 4095}]\n", `network.vlans[0].id: 4095 is not a VLAN ID`},
		{"vlan link", "hostname: a\nnetwork:\n  vlans: [{name: v, link: e0, id: 5}]\n", `network.vlans[0].link: "e0" is not a link or bond`},
		{"route family", "hostname: a\nnetwork:\n  routes: [{to: 0.0.0.0/0, via: \"fe80::1\"}]\n", `network.routes[0].via: "fe80::1" is not of the same family`},
		{"route onlink", "hostname: a\nnetwork:\n  routes: [{to: 10.0.0.0/8}]\n", `network.routes[0].dev: an on-link route (no via) needs dev`},
		{"mtu", "hostname: a\nnetwork:\n  links: [{name: e0, mtu: 20}]\n", `network.links[0].mtu: 20 is out of range`},
		{"vip", "hostname: a\ncluster: {name: c, domain: d.org, vip: \"::1\"}\n", `n.yaml:2: cluster.vip: "::1" is not an IPv4 address`},
		{"node address", "hostname: a\ncluster: {name: c, domain: d.org, nodes: [{name: n, address: x}]}\n", `cluster.nodes[0].address: "x" is not an IPv4 address`},
		{"domain", "hostname: a\ncluster: {name: c, domain: \"a..b\"}\n", `cluster.domain: "a..b" is not a domain name`},
		{"forwarder", "hostname: a\ndns: {forwarders: [resolver]}\n", `dns.forwarders[0]: "resolver" is not an IP address`},
		{"allow", "hostname: a\ndns: {allow: [10.0.0.0]}\n", `dns.allow[0]: "10.0.0.0" is not a network in CIDR form`},
		{"duration", "hostname: a\ntime: {step_threshold: soon}\n", "n.yaml: line 2: cannot unmarshal !!str `soon` into time.Duration"},
		{"negative", "hostname: a\ntime: {poll_interval: -1s}\n", "time.poll_interval: -1s is negative"},
		// The two examples of docs/node-config.md, whole.
		{"doc: unknown field", "hostname: a\nnetwork:\n  links:\n    - name: lan1\n      adresses: [10.0.0.1/24]\n",
			`n.yaml:5: unknown field "adresses" in network.links[0] (expected one of: addresses, dhcp, mac, mtu, name): invalid configuration`},
		{"doc: bond member", "hostname: a\nnetwork:\n  links: [{name: lan1}]\n  bonds:\n    - name: b0\n      members: [lan1, lan2]\n",
			`n.yaml:6: network.bonds[0].members[1]: "lan2" is not in network.links`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml), "n.yaml")
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want %q", tc.yaml, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "n.yaml:") {
				t.Errorf("Load(%q) = %q, want it to start with the file (and line) and contain %q", tc.yaml, err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Load(%q) = %v, want errors.Is ErrInvalid", tc.yaml, err)
			}
		})
	}
}

// clusterNode is a data node of a well-formed cluster; the cases of
// TestClusterRules each change one line of it.
const clusterNode = `hostname: a
cluster:
  name: c
  domain: d.org
  vip: 10.0.0.10
  nodes:
    - {name: a, address: 10.0.0.1}
    - {name: b, address: 10.0.0.2}
    - {name: q, address: 10.0.0.3, role: arbitrator}
  lease_ttl: 3s
network:
  links: [{name: eth0, addresses: [10.0.0.1/24]}]
dns:
  ttl: 60s
  cache_size: 4096
`

// edit returns clusterNode with each old line replaced by its new one.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := clusterNode
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]+"\n") {
			t.Fatalf("clusterNode has no line %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i]+"\n", pairs[i+1]+"\n", 1)
	}
	return s
}

const (
	nodeA = "    - {name: a, address: 10.0.0.1}"
	nodeB = "    - {name: b, address: 10.0.0.2}"
	nodeQ = "    - {name: q, address: 10.0.0.3, role: arbitrator}"
)

// What the cluster daemon refuses at its first start is refused when the
// file is loaded, on the line of the field.
func TestClusterRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []string
		want  string
	}{
		{"ipv6 member", []string{nodeB, `    - {name: b, address: "2001:db8::2"}`}, `n.yaml:8: cluster.nodes[1].address: "2001:db8::2" is not an IPv4 address`},
		{"ipv4-mapped member", []string{nodeB, `    - {name: b, address: "::ffff:10.0.0.2"}`}, `n.yaml:8: cluster.nodes[1].address: "::ffff:10.0.0.2" is not an IPv4 address`},
		{"loopback member", []string{nodeB, "    - {name: b, address: 127.0.0.2}"}, `n.yaml:8: cluster.nodes[1].address: "127.0.0.2" is not a host address other nodes can reach`},
		{"upper-case cluster", []string{"  name: c", "  name: C"}, `n.yaml:3: cluster.name: "C" is not a name`},
		{"upper-case member", []string{nodeB, "    - {name: B, address: 10.0.0.2}"}, `n.yaml:8: cluster.nodes[1].name: "B" is not a name`},
		{"upper-case hostname", []string{"hostname: a", "hostname: A", nodeA, "    - {name: A, address: 10.0.0.1}"}, `n.yaml:1: hostname: "A" is not a name`},
		{"long member name", []string{nodeB, "    - {name: " + strings.Repeat("b", 33) + ", address: 10.0.0.2}"}, `n.yaml:8: cluster.nodes[1].name: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" is not a name`},
		{"hostname not listed", []string{"hostname: a", "hostname: z"}, `n.yaml:1: hostname: "z" is not one of cluster.nodes (a, b, q)`},
		{"one data node", []string{nodeB, ""}, "n.yaml:7: cluster.nodes: want 2 data nodes and 1 arbitrator (role: arbitrator), have 1 and 1"},
		{"no arbitrator", []string{nodeQ, "    - {name: q, address: 10.0.0.3}"}, "n.yaml:7: cluster.nodes: want 2 data nodes and 1 arbitrator (role: arbitrator), have 3 and 0"},
		{"two arbitrators", []string{nodeB, "    - {name: b, address: 10.0.0.2, role: arbitrator}"}, "n.yaml:7: cluster.nodes: want 2 data nodes and 1 arbitrator (role: arbitrator), have 1 and 2"},
		{"duplicate address", []string{nodeB, "    - {name: b, address: 10.0.0.1}"}, `n.yaml:8: cluster.nodes[1].address: "10.0.0.1" is also cluster.nodes[0].address`},
		{"vip is a member's", []string{"  vip: 10.0.0.10", "  vip: 10.0.0.3"}, `n.yaml:5: cluster.vip: "10.0.0.3" is also cluster.nodes[2].address`},
		{"vip broadcast", []string{"  vip: 10.0.0.10", "  vip: 255.255.255.255"}, `n.yaml:5: cluster.vip: "255.255.255.255" is not a host address`},
		{"data node without vip", []string{"  vip: 10.0.0.10", ""}, "n.yaml:3: cluster.vip: is required: a is a data node"},
		{"vip off the node's subnets", []string{"  vip: 10.0.0.10", "  vip: 10.1.0.10"}, "n.yaml:5: cluster.vip: 10.1.0.10 is in no subnet of this node's static addresses"},
		{"fence agent", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: drac, address: 10.0.9.2, user: fence, password_file: /perm/tandem/b.pass}}"}, `n.yaml:8: cluster.nodes[1].fence.agent: "drac": want ipmi`},
		{"fence libvirt", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: libvirt, address: 10.0.9.2, user: fence, password_file: /perm/tandem/b.pass}}"}, `n.yaml:8: cluster.nodes[1].fence.agent: libvirt: not yet`},
		{"fence loopback", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, address: 127.0.0.1, user: fence, password_file: /perm/tandem/b.pass}}"}, `n.yaml:8: cluster.nodes[1].fence.address: "127.0.0.1" is not a host address other nodes can reach`},
		{"fence bad name", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, address: bmc_b, user: fence, password_file: /perm/tandem/b.pass}}"}, `n.yaml:8: cluster.nodes[1].fence.address: "bmc_b" is not a domain name`},
		{"fence user", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, address: 10.0.9.2, user: uuuuuuuuuuuuuuuuu, password_file: /p}}"}, `n.yaml:8: cluster.nodes[1].fence.user: "uuuuuuuuuuuuuuuuu": want a BMC user of 1 to 16 bytes`},
		{"fence relative password", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, address: 10.0.9.2, user: fence, password_file: b.pass}}"}, `n.yaml:8: cluster.nodes[1].fence.password_file: "b.pass": want an absolute path`},
		{"fence port", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, address: bmc-b.example.org, port: 70000, user: fence, password_file: /p}}"}, `n.yaml:8: cluster.nodes[1].fence.port: 70000: want 1 to 65535`},
		{"fence missing", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi}}"}, `n.yaml:8: cluster.nodes[1].fence.address: required`},
		{"fence arbitrator", []string{nodeQ, "    - {name: q, address: 10.0.0.3, role: arbitrator, fence: {agent: ipmi, address: 10.0.9.3, user: f, password_file: /p}}"}, `n.yaml:9: cluster.nodes[2].fence: an arbitrator is never fenced`},
		{"fence unknown field", []string{nodeB, "    - {name: b, address: 10.0.0.2, fence: {agent: ipmi, host: 10.0.9.2}}"}, `unknown field "host" in cluster.nodes[1].fence`},
		{"lease_ttl short", []string{"  lease_ttl: 3s", "  lease_ttl: 1s"}, "n.yaml:10: cluster.lease_ttl: 1s: want whole seconds from 2s to 2m0s"},
		{"lease_ttl long", []string{"  lease_ttl: 3s", "  lease_ttl: 121s"}, "n.yaml:10: cluster.lease_ttl: 2m1s: want whole seconds from 2s to 2m0s"},
		{"lease_ttl fraction", []string{"  lease_ttl: 3s", "  lease_ttl: 2500ms"}, "n.yaml:10: cluster.lease_ttl: 2.5s: want whole seconds"},
		{"dns ttl fraction", []string{"  ttl: 60s", "  ttl: 1500ms"}, "n.yaml:14: dns.ttl: 1.5s: want whole seconds from 1s to 24h0m0s"},
		{"dns ttl long", []string{"  ttl: 60s", "  ttl: 25h"}, "n.yaml:14: dns.ttl: 25h0m0s: want whole seconds from 1s to 24h0m0s"},
		{"dns ttl negative", []string{"  ttl: 60s", "  ttl: -1s"}, "n.yaml:14: dns.ttl: -1s: want whole seconds"},
		{"cache too large", []string{"  cache_size: 4096", "  cache_size: 65537"}, "n.yaml:15: dns.cache_size: 65537: want 1 to 65536 answers"},
		{"cache negative", []string{"  cache_size: 4096", "  cache_size: -1"}, "n.yaml:15: dns.cache_size: -1: want 1 to 65536 answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := edit(t, tc.edits...)
			_, err := Load(strings.NewReader(y), "n.yaml")
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(\n%s) = %v, want ErrInvalid with %q", y, err, tc.want)
			}
		})
	}
}

// The edges of each rule load, and so does a node outside any cluster.
func TestClusterRulesAccept(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []string
	}{
		{"as written", nil},
		{"arbitrator needs no vip subnet", []string{"hostname: a", "hostname: q", "network:", "network: {}", "  links: [{name: eth0, addresses: [10.0.0.1/24]}]", ""}},
		{"roles in any order", []string{nodeA, nodeQ, nodeQ, nodeA}},
		{"explicit data role", []string{nodeB, "    - {name: b, address: 10.0.0.2, role: data}"}},
		{"32-character names", []string{nodeB, "    - {name: " + strings.Repeat("b", 32) + ", address: 10.0.0.2}"}},
		{"lease_ttl 2s", []string{"  lease_ttl: 3s", "  lease_ttl: 2s"}},
		{"lease_ttl 120s", []string{"  lease_ttl: 3s", "  lease_ttl: 120s"}},
		{"dns ttl 1s", []string{"  ttl: 60s", "  ttl: 1s"}},
		{"dns ttl 24h", []string{"  ttl: 60s", "  ttl: 24h"}},
		{"cache 1", []string{"  cache_size: 4096", "  cache_size: 1"}},
		{"cache 65536", []string{"  cache_size: 4096", "  cache_size: 65536"}},
		// Before pairing: a cluster's name and domain, no members yet.
		{"no members", []string{"hostname: a", "hostname: kvm-node", nodeA, "", nodeB, "", nodeQ, "", "  nodes:", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := edit(t, tc.edits...)
			if _, err := Load(strings.NewReader(y), "n.yaml"); err != nil {
				t.Errorf("Load(\n%s) = %v, want no error", y, err)
			}
		})
	}
}

// The cluster errors docs/node-config.md shows are Load's, word for word.
func TestDocClusterExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/node-config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edits []string
		line  string
	}{
		{[]string{nodeQ, "    - {name: q, address: 10.0.0.3}"},
			"/perm/tandem/node.yaml:7: cluster.nodes: want 2 data nodes and 1 arbitrator (role: arbitrator), have 3 and 0"},
		{[]string{nodeB, `    - {name: b, address: "2001:db8::2"}`},
			`/perm/tandem/node.yaml:8: cluster.nodes[1].address: "2001:db8::2" is not an IPv4 address`},
	} {
		_, err := Load(strings.NewReader(edit(t, tc.edits...)), "/perm/tandem/node.yaml")
		if err == nil || !slices.Contains(strings.Split(err.Error(), "\n"), tc.line) {
			t.Errorf("Load = %v, want the line %s", err, tc.line)
		}
		if !strings.Contains(string(doc), "    "+tc.line+"\n") {
			t.Errorf("docs/node-config.md does not show %s", tc.line)
		}
	}
}
