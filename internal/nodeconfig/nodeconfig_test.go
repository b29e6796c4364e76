package nodeconfig

import (
	"errors"
	"os"
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
		{"unknown field", "hostname: a\nhostnmae: b\n", `n.yaml:2: unknown field "hostnmae" (expected one of: cluster, dns, hostname, network, time)`},
		{"missing hostname", "network: {}\n", "n.yaml: hostname: is required"},
		{"bad hostname", "hostname: a_b\n", `n.yaml:1: hostname: "a_b" is not a DNS label`},
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
		{"node address", "hostname: a\ncluster: {name: c, domain: d.org, nodes: [{name: n, address: x}]}\n", `cluster.nodes[0].address: "x" is not an IP address`},
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
