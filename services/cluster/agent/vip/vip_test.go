package vip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"tandem/internal/netnstest"
)

func TestGratuitousARPFrame(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	f := GratuitousARP(mac, netip.MustParseAddr("192.0.2.100"))
	if len(f) != 42 {
		t.Fatalf("len = %d, want 42", len(f))
	}
	checks := []struct {
		name     string
		off, end int
		want     []byte
	}{
		{"dst", 0, 6, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"src", 6, 12, mac},
		{"ethertype", 12, 14, []byte{0x08, 0x06}},
		{"op", 20, 22, []byte{0, 1}},
		{"sender ip", 28, 32, []byte{192, 0, 2, 100}},
		{"target ip", 38, 42, []byte{192, 0, 2, 100}},
	}
	for _, c := range checks {
		if got := f[c.off:c.end]; string(got) != string(c.want) {
			t.Errorf("%s = % x, want % x", c.name, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"10.0.0.1", "fe80::1/64", "x/24"} {
		if _, err := Parse(bad, "eth0"); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", bad)
		}
	}
	if _, err := Parse("10.0.0.1/24", ""); err == nil {
		t.Errorf("Parse without interface = nil error, want one")
	}
}

// TestStartStopAnnounce adds the VIP in one namespace and checks that the
// peer learned it from the gratuitous ARP alone (arp_accept=1 lets it
// create the entry) and can reach it.
func TestStartStopAnnounce(t *testing.T) {
	n := netnstest.New(t)
	h, p := n.Host("h"), n.Host("p")
	n.Link(h, "eth0", "192.0.2.1/24", p, "eth0", "192.0.2.2/24")
	n.Run(p, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1")
	v, err := Parse("192.0.2.100/24", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inH := func(f func(context.Context) error) error { return n.Do(h, func() error { return f(ctx) }) }
	if err := inH(v.Monitor); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Monitor before Start = %v, want ErrNotRunning", err)
	}
	if err := inH(v.Start); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := inH(v.Start); err != nil {
		t.Fatalf("Start again (address present): %v", err)
	}
	if err := inH(v.Monitor); err != nil {
		t.Fatalf("Monitor after Start: %v", err)
	}
	mac := strings.Fields(n.Run(h, "cat", "/sys/class/net/eth0/address"))[0]
	if neigh := n.Run(p, "ip", "neigh", "show", "192.0.2.100"); !strings.Contains(neigh, mac) {
		t.Errorf("peer's neighbour entry for the VIP = %q, want it learned from gratuitous ARP (%s)", neigh, mac)
	}
	n.Run(p, "ping", "-c", "1", "-W", "2", "192.0.2.100")
	if err := inH(v.Stop); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := inH(v.Stop); err != nil {
		t.Fatalf("Stop again (address gone): %v", err)
	}
	if err := inH(v.Monitor); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Monitor after Stop = %v, want ErrNotRunning", err)
	}
}
