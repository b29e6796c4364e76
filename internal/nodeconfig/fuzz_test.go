package nodeconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad feeds Load arbitrary files. For every input: no panic; an
// error wraps ErrInvalid and each of its lines starts with the file's name;
// a config that loads validates again, keeps the cluster's rules, its
// accessors never fail, and marshalling and loading it again changes
// nothing. Seeds: the example, the shipped images' configs, clusterNode
// and testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob("../../recipes/*.config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range append(seeds, "testdata/example.yaml") {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(clusterNode))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(bytes.NewReader(data), "f.yaml")
		if err != nil {
			checkLoadError(t, err)
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("a loaded config does not validate again: %v", err)
		}
		checkClusterRules(t, c)
		checkAccessors(t, c)
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("yaml.Marshal(loaded config) = %v", err)
		}
		again, err := Load(bytes.NewReader(out), "again.yaml")
		if err != nil {
			t.Fatalf("Load(marshalled config) = %v\n%s", err, out)
		}
		if out2, _ := yaml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("marshal, load, marshal changed the config:\n%s\nbecame\n%s", out, out2)
		}
	})
}

func checkLoadError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load = %v, want it to wrap ErrInvalid", err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, "f.yaml") {
			t.Fatalf("Load error line %q does not start with the file's name", line)
		}
	}
}

// checkClusterRules checks, independently of validate, what the cluster
// daemon needs of a loaded config.
func checkClusterRules(t *testing.T, c *Config) {
	t.Helper()
	cl := c.Cluster
	seen := map[string]bool{cl.VIP: cl.VIP != ""}
	data, arbitrators, self := 0, 0, false
	for _, n := range cl.Nodes {
		if !n.Addr().Is4() || seen[n.Address] || strings.ToLower(n.Name) != n.Name {
			t.Fatalf("member %+v: want a lower-case name and an IPv4 address no other member or the VIP has", n)
		}
		seen[n.Address] = true
		self = self || n.Name == c.Hostname
		if n.Role == "arbitrator" {
			arbitrators++
		} else {
			data++
		}
	}
	if len(cl.Nodes) > 0 && (data != 2 || arbitrators != 1 || !self) {
		t.Fatalf("cluster.nodes %+v with hostname %q: want 2 data nodes, 1 arbitrator, this node among them", cl.Nodes, c.Hostname)
	}
	if lt := cl.LeaseTTL; lt != 0 && (lt < minLeaseTTL || lt > maxLeaseTTL) {
		t.Fatalf("cluster.lease_ttl %v loaded", lt)
	}
}

// checkAccessors: the accessors of parsed.go never fail on a loaded
// config.
func checkAccessors(t *testing.T, c *Config) {
	t.Helper()
	for _, i := range c.Interfaces() {
		if len(i.Prefixes()) != len(i.Addresses) {
			t.Fatalf("%s: Prefixes() = %v for addresses %q", i.Name, i.Prefixes(), i.Addresses)
		}
	}
	for _, l := range c.Network.Links {
		if l.MAC != "" && l.HardwareAddr() == nil {
			t.Fatalf("link %s: HardwareAddr() = nil for mac %q", l.Name, l.MAC)
		}
	}
	for _, r := range c.Network.Routes {
		if !r.Destination().IsValid() || (r.Via != "") != r.Gateway().IsValid() {
			t.Fatalf("route %+v: Destination() = %v, Gateway() = %v", r, r.Destination(), r.Gateway())
		}
	}
	if (c.Cluster.VIP != "") != c.Cluster.VIPAddr().Is4() {
		t.Fatalf("VIPAddr() = %v for vip %q", c.Cluster.VIPAddr(), c.Cluster.VIP)
	}
	d := c.DNS
	if len(d.AllowedNets()) != len(d.Allow) || len(d.ForwarderAddrs()) != len(d.Forwarders) {
		t.Fatalf("AllowedNets() = %v, ForwarderAddrs() = %v for allow %q, forwarders %q", d.AllowedNets(), d.ForwarderAddrs(), d.Allow, d.Forwarders)
	}
}
