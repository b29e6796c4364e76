package dns

import (
	"context"
	"errors"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"tandem/internal/nodeconfig"
)

func TestLoadClusterView(t *testing.T) {
	v, err := LoadClusterView(strings.NewReader(`{"vip":"192.0.2.50","nodes":[{"name":"x","address":"192.0.2.51"}]}`), "v.json")
	if err != nil || v.VIP != "192.0.2.50" || len(v.Nodes) != 1 {
		t.Fatalf("LoadClusterView = %+v, %v", v, err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"vip":"192.0.2.50","extra":1}`, `unknown field "extra"`},
		{`{"vip":"::1"}`, `vip: "::1" is not an IPv4 address`},
		{`{"nodes":[{"name":"","address":"1.2.3.4"}]}`, `nodes[0].name: is required`},
		{`{"nodes":[{"name":"a","address":"x"}]}`, `nodes[0].address: "x" is not an IP address`},
		{`{"txt":[{"name":"k._domainkey.","text":"v=DKIM1"}]}`, `txt[0].name: "k._domainkey." is not a name relative to the domain`},
		{`{"txt":[{"name":"k._domainkey","text":""}]}`, `txt[0].text: want 1 to 4096 printable ASCII`},
		{`{"txt":[{"name":"k._domainkey","text":"a\u0007b"}]}`, `txt[0].text: want 1 to 4096 printable ASCII`},
	} {
		_, err := LoadClusterView(strings.NewReader(tc.in), "v.json")
		if !errors.Is(err, ErrBadView) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "v.json: ") {
			t.Errorf("LoadClusterView(%s) = %v, want v.json: ... %s", tc.in, err, tc.want)
		}
	}
}

func TestZoneOfPrefersTheView(t *testing.T) {
	c, err := nodeconfig.LoadFile("../../internal/nodeconfig/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	z := ZoneOf(c, nil)
	if z.VIP.String() != "192.0.2.10" || len(z.Members) != 3 || z.Domain != "mail.example.org" {
		t.Errorf("ZoneOf(example) = %+v", z)
	}
	z = ZoneOf(c, &ClusterView{VIP: "192.0.2.20", Nodes: []nodeconfig.Node{{Name: "n", Address: "192.0.2.21"}}})
	if z.VIP.String() != "192.0.2.20" || len(z.Members) != 1 {
		t.Errorf("ZoneOf(example, view) = %+v, want the view's VIP and members", z)
	}
}

// The server gets the dns section's settings, defaults included.
func TestConfigOf(t *testing.T) {
	c, err := nodeconfig.LoadFile("../../internal/nodeconfig/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := ConfigOf(c)
	want := RateLimit{PerSecond: nodeconfig.DefaultDNSRate, Slip: nodeconfig.DefaultDNSSlip, MaxSources: nodeconfig.DefaultDNSMaxSources}
	if got.MaxUpstream != nodeconfig.DefaultDNSMaxUpstream || got.RateLimit != want || got.CacheSize != 4096 {
		t.Errorf("ConfigOf(example) = max upstream %d, rate limit %+v, cache %d; want %d, %+v, 4096",
			got.MaxUpstream, got.RateLimit, got.CacheSize, nodeconfig.DefaultDNSMaxUpstream, want)
	}
	if len(got.Allow) != 3 || len(got.Forwarders) != 1 || got.OpenResolver {
		t.Errorf("ConfigOf(example).Policy = %+v, want 3 networks, 1 forwarder, not open", got.Policy)
	}
}

// A view's text record (the DKIM key) is served, a long text split into
// 255-byte strings that join to the text again.
func TestViewTXTServed(t *testing.T) {
	c, err := nodeconfig.LoadFile("../../internal/nodeconfig/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 392)
	v, err := LoadClusterView(strings.NewReader(`{"nodes":[{"name":"mail-a","address":"192.0.2.11"}],"txt":[{"name":"tandem20261202._domainkey","text":"`+text+`"}]}`), "v.json")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{}, ZoneOf(c, v))
	r := s.Handle(context.Background(), local, true, query("tandem20261202._domainkey.mail.example.org.", mdns.TypeTXT))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("TXT query = %v", r)
	}
	txt := r.Answer[0].(*mdns.TXT).Txt
	if len(txt) != 2 || len(txt[0]) != 255 || strings.Join(txt, "") != text {
		t.Errorf("TXT strings = %d (%v), want the text in 255-byte strings", len(txt), txt)
	}
	if r := s.Handle(context.Background(), local, true, query("other._domainkey.mail.example.org.", mdns.TypeTXT)); r.Rcode != mdns.RcodeNameError {
		t.Errorf("TXT of an unknown name: rcode %d, want NXDOMAIN", r.Rcode)
	}
}
