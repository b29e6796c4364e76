package replication

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"tandem/internal/golden"
)

func testConfig() Config {
	return Config{
		Resource: "data",
		Minor:    0,
		Nodes: [2]Node{
			{Name: "tandem-a", Address: netip.MustParseAddrPort("10.99.0.1:7789"), Disk: "/dev/vda"},
			{Name: "tandem-b", Address: netip.MustParseAddrPort("10.99.0.2:7789"), Disk: "/dev/vda"},
		},
		HandlerCommand: "/usr/lib/tandem/replication-handler",
		SharedSecret:   "GoldenTestSecret0123",
	}
}

func TestWriteResourceGolden(t *testing.T) {
	v6 := testConfig()
	v6.Resource, v6.Minor, v6.ResyncRate = "mail", 3, "40M"
	v6.Nodes[0].Address = netip.MustParseAddrPort("[fd00:99::1]:7790")
	v6.Nodes[1].Address = netip.MustParseAddrPort("[fd00:99::2]:7790")
	v6.Nodes[1].Disk = "/dev/sdb3"
	for _, tc := range []struct {
		name string
		c    Config
	}{{"ipv4", testConfig()}, {"ipv6", v6}} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.c.WriteResource(&b); err != nil {
				t.Fatalf("WriteResource: %v", err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".res"), b.Bytes())
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"empty resource", func(c *Config) { c.Resource = "" }},
		{"resource with space", func(c *Config) { c.Resource = "a b" }},
		{"negative minor", func(c *Config) { c.Minor = -1 }},
		{"relative handler", func(c *Config) { c.HandlerCommand = "tandem" }},
		{"quoted handler", func(c *Config) { c.HandlerCommand = `/bin/x";` }},
		{"bad rate", func(c *Config) { c.ResyncRate = "fast" }},
		{"no node name", func(c *Config) { c.Nodes[1].Name = "" }},
		{"no port", func(c *Config) { c.Nodes[0].Address = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 0) }},
		{"unspecified address", func(c *Config) { c.Nodes[0].Address = netip.MustParseAddrPort("0.0.0.0:7789") }},
		{"disk not in /dev", func(c *Config) { c.Nodes[0].Disk = "vda" }},
		{"same names", func(c *Config) { c.Nodes[1].Name = c.Nodes[0].Name }},
		{"same address", func(c *Config) { c.Nodes[1].Address = c.Nodes[0].Address }},
		{"no secret", func(c *Config) { c.SharedSecret = "" }},
		{"short secret", func(c *Config) { c.SharedSecret = "abc123" }},
		{"quoted secret", func(c *Config) { c.SharedSecret = `abcdefghijklmnop"; x` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.edit(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Errorf("Validate() = %v, want ErrConfig", err)
			}
			if err := c.WriteResource(&bytes.Buffer{}); !errors.Is(err, ErrConfig) {
				t.Errorf("WriteResource() = %v, want ErrConfig", err)
			}
		})
	}
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(testConfig) = %v, want nil", err)
	}
}

func TestPeerLocal(t *testing.T) {
	c := testConfig()
	if p, ok := c.Peer("tandem-a"); !ok || p.Name != "tandem-b" {
		t.Errorf("Peer(tandem-a) = %v, %v, want tandem-b", p.Name, ok)
	}
	if p, ok := c.Peer("tandem-b"); !ok || p.Name != "tandem-a" {
		t.Errorf("Peer(tandem-b) = %v, %v, want tandem-a", p.Name, ok)
	}
	if _, ok := c.Peer("arbiter"); ok {
		t.Errorf("Peer(arbiter) ok, want not a node")
	}
	if _, ok := c.Local("arbiter"); ok {
		t.Errorf("Local(arbiter) ok, want not a node")
	}
}
