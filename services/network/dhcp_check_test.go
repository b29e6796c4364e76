package network

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"tandem/internal/nodeconfig"
)

// checkCluster is the node config the replies are checked against: this
// node is mail-a (10.67.0.2), its peer mail-b (10.67.0.3), the VIP
// 10.67.0.10.
var checkCluster = &nodeconfig.Config{
	Hostname: "mail-a",
	Cluster: nodeconfig.Cluster{VIP: "10.67.0.10", Nodes: []nodeconfig.Node{
		{Name: "mail-a", Address: "10.67.0.2"},
		{Name: "mail-b", Address: "10.67.0.3"},
		{Name: "arb", Address: "10.67.0.4", Role: "arbitrator"},
	}},
}

// reply is a good ACK for 10.67.0.55/24 via 10.67.0.1 with one name
// server and an hour's lease, changed by mods.
func reply(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 67, 0, 55)),
		dhcpv4.WithNetmask(net.IPv4Mask(255, 255, 255, 0)),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(10, 67, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(10, 67, 0, 53))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 67, 0, 1))),
		dhcpv4.WithLeaseTime(3600),
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func yiaddr(a, b, c, d byte) dhcpv4.Modifier { return dhcpv4.WithYourIP(net.IPv4(a, b, c, d)) }
func mask(a, b, c, d byte) dhcpv4.Modifier   { return dhcpv4.WithNetmask(net.IPv4Mask(a, b, c, d)) }
func router(a, b, c, d byte) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(a, b, c, d)))
}

// TestCheckReplyRefused: a reply that would misaddress or misroute the
// node, or take a cluster address, is refused naming the field and the
// value.
func TestCheckReplyRefused(t *testing.T) {
	tests := []struct {
		name         string
		mods         []dhcpv4.Modifier
		field, value string
		reason       string // a part of the reason
	}{
		{"vip", []dhcpv4.Modifier{yiaddr(10, 67, 0, 10)}, "yiaddr", "10.67.0.10", "cluster.vip"},
		{"peer", []dhcpv4.Modifier{yiaddr(10, 67, 0, 3)}, "yiaddr", "10.67.0.3", "cluster.nodes[1].address (mail-b)"},
		{"arbitrator", []dhcpv4.Modifier{yiaddr(10, 67, 0, 4)}, "yiaddr", "10.67.0.4", "cluster.nodes[2].address (arb)"},
		{"loopback", []dhcpv4.Modifier{yiaddr(127, 0, 0, 5), mask(255, 0, 0, 0)}, "yiaddr", "127.0.0.5", "loopback"},
		{"unspecified", []dhcpv4.Modifier{yiaddr(0, 0, 0, 0)}, "yiaddr", "0.0.0.0", "this network"},
		{"this network", []dhcpv4.Modifier{yiaddr(0, 1, 2, 3)}, "yiaddr", "0.1.2.3", "this network"},
		{"multicast", []dhcpv4.Modifier{yiaddr(224, 0, 0, 5)}, "yiaddr", "224.0.0.5", "multicast"},
		{"limited broadcast", []dhcpv4.Modifier{yiaddr(255, 255, 255, 255)}, "yiaddr", "255.255.255.255", "broadcast address"},
		{"reserved", []dhcpv4.Modifier{yiaddr(240, 0, 0, 1)}, "yiaddr", "240.0.0.1", "240.0.0.0/4"},
		{"link-local", []dhcpv4.Modifier{yiaddr(169, 254, 3, 4), mask(255, 255, 0, 0)}, "yiaddr", "169.254.3.4", "link-local"},
		{"subnet broadcast", []dhcpv4.Modifier{yiaddr(10, 67, 0, 255)}, "yiaddr", "10.67.0.255", "broadcast address of 10.67.0.0/24"},
		{"network address", []dhcpv4.Modifier{yiaddr(10, 67, 0, 0)}, "yiaddr", "10.67.0.0", "network address of 10.67.0.0/24"},
		{"mask not contiguous", []dhcpv4.Modifier{mask(255, 0, 255, 0)}, "subnet mask", "255.0.255.0", "not contiguous"},
		{"mask /0", []dhcpv4.Modifier{mask(0, 0, 0, 0)}, "subnet mask", "0.0.0.0", "/0 is not"},
		{"mask /7", []dhcpv4.Modifier{mask(254, 0, 0, 0)}, "subnet mask", "254.0.0.0", "/7 is not"},
		{"mask /31", []dhcpv4.Modifier{mask(255, 255, 255, 254)}, "subnet mask", "255.255.255.254", "/31 is not"},
		{"mask /32", []dhcpv4.Modifier{mask(255, 255, 255, 255)}, "subnet mask", "255.255.255.255", "/32 is not"},
		{"mask malformed", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionSubnetMask, []byte{255, 255})}, "subnet mask", "ffff", "malformed"},
		{"router outside", []dhcpv4.Modifier{router(10, 68, 0, 1)}, "router", "10.68.0.1", "outside the offered subnet 10.67.0.0/24"},
		{"router is us", []dhcpv4.Modifier{router(10, 67, 0, 55)}, "router", "10.67.0.55", "offered address itself"},
		{"router broadcast", []dhcpv4.Modifier{router(10, 67, 0, 255)}, "router", "10.67.0.255", "network or broadcast"},
		{"router loopback", []dhcpv4.Modifier{router(127, 0, 0, 1)}, "router", "127.0.0.1", "outside"},
		{"router malformed", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRouter, []byte{10, 67, 0})}, "router", "0a4300", "malformed"},
	}
	reserved := clusterAddrs(checkCluster)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, err := checkReply("eth0", reply(t, tt.mods...), reserved)
			var le *LeaseError
			if !errors.As(err, &le) || !errors.Is(err, ErrBadLease) {
				t.Fatalf("checkReply = %+v, %v; want a *LeaseError for %s %s", l, err, tt.field, tt.value)
			}
			if le.Field != tt.field || le.Value != tt.value || !strings.Contains(le.Reason, tt.reason) {
				t.Errorf("checkReply refused %s %s: %s; want %s %s: ...%s...", le.Field, le.Value, le.Reason, tt.field, tt.value, tt.reason)
			}
			if msg := err.Error(); !strings.Contains(msg, "eth0") || !strings.Contains(msg, tt.field+" "+tt.value) || !strings.Contains(msg, "10.67.0.1") {
				t.Errorf("checkReply error = %q, want the interface, the server and %q", msg, tt.field+" "+tt.value)
			}
		})
	}
}

// TestCheckReplyAccepted: a good reply becomes its lease; lease times out
// of bounds are clamped, unusable name servers dropped, and each change
// reported with the field and the value sent.
func TestCheckReplyAccepted(t *testing.T) {
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	good := Lease{Iface: "eth0", Addr: netip.MustParsePrefix("10.67.0.55/24"), Router: netip.MustParseAddr("10.67.0.1"),
		DNS: []string{"10.67.0.53"}, Server: netip.MustParseAddr("10.67.0.1"), Duration: time.Hour, Renew: 30 * time.Minute}
	with := func(f func(*Lease)) Lease { l := good; f(&l); return l }
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want Lease
		adj  []adjustment
	}{
		{"good", nil, good, nil},
		{"own member address", []dhcpv4.Modifier{yiaddr(10, 67, 0, 2)},
			with(func(l *Lease) { l.Addr = netip.MustParsePrefix("10.67.0.2/24") }), nil},
		{"no mask is /24", []dhcpv4.Modifier{dhcpv4.WithoutOption(dhcpv4.OptionSubnetMask)}, good, nil},
		{"/8", []dhcpv4.Modifier{mask(255, 0, 0, 0)}, with(func(l *Lease) { l.Addr = netip.MustParsePrefix("10.67.0.55/8") }), nil},
		{"/30", []dhcpv4.Modifier{yiaddr(10, 67, 0, 6), mask(255, 255, 255, 252), router(10, 67, 0, 5)},
			with(func(l *Lease) {
				l.Addr, l.Router = netip.MustParsePrefix("10.67.0.6/30"), netip.MustParseAddr("10.67.0.5")
			}), nil},
		{"no router", []dhcpv4.Modifier{dhcpv4.WithoutOption(dhcpv4.OptionRouter)}, with(func(l *Lease) { l.Router = netip.Addr{} }), nil},
		{"lease time 0", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0)},
			with(func(l *Lease) { l.Duration, l.Renew = time.Minute, 30*time.Second }),
			[]adjustment{{"lease time", "0s", "1m0s"}}},
		{"lease time 10s", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(10)},
			with(func(l *Lease) { l.Duration, l.Renew = time.Minute, 30*time.Second }),
			[]adjustment{{"lease time", "10s", "1m0s"}}},
		{"infinite lease", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0xffffffff)},
			with(func(l *Lease) { l.Duration, l.Renew = maxLeaseTime, maxLeaseTime/2 }),
			[]adjustment{{"lease time", "1193046h28m15s", "168h0m0s"}}},
		{"no lease time", []dhcpv4.Modifier{dhcpv4.WithoutOption(dhcpv4.OptionIPAddressLeaseTime)}, good, nil},
		{"T1 kept", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(3 * time.Second))},
			with(func(l *Lease) { l.Renew = 3 * time.Second }), nil},
		{"T1 past the lease", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(2 * time.Hour))}, good,
			[]adjustment{{"renewal time (T1)", "2h0m0s", "30m0s"}}},
		{"T1 zero", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(0))}, good,
			[]adjustment{{"renewal time (T1)", "0s", "30m0s"}}},
		{"dns dropped", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptDNS(ip("127.0.0.1"), ip("0.0.0.0"), ip("10.67.0.53"),
			ip("224.0.0.251"), ip("255.255.255.255"), ip("10.67.0.53"), ip("10.67.0.54"), ip("127.0.0.53"), ip("10.67.0.56"), ip("10.67.0.57")))},
			with(func(l *Lease) { l.DNS = []string{"10.67.0.53", "10.67.0.54", "10.67.0.56"} }),
			[]adjustment{
				{"dns", "127.0.0.1", "dropped (not a usable server address)"},
				{"dns", "0.0.0.0", "dropped (not a usable server address)"},
				{"dns", "224.0.0.251", "dropped (not a usable server address)"},
				{"dns", "255.255.255.255", "dropped (not a usable server address)"},
				{"dns", "127.0.0.53", "dropped (not a usable server address)"},
				{"dns", "10.67.0.57", "dropped (more than 3 servers)"},
			}},
		{"dns malformed", []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionDomainNameServer, []byte{10, 67})},
			with(func(l *Lease) { l.DNS = nil }), []adjustment{{"dns", "0a43", "none (malformed)"}}},
	}
	reserved := clusterAddrs(checkCluster)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, adj, err := checkReply("eth0", reply(t, tt.mods...), reserved)
			if err != nil {
				t.Fatalf("checkReply = %v, want %+v", err, tt.want)
			}
			if !reflect.DeepEqual(*l, tt.want) {
				t.Errorf("checkReply lease = %+v, want %+v", *l, tt.want)
			}
			if !reflect.DeepEqual(adj, tt.adj) {
				t.Errorf("checkReply adjustments = %+v, want %+v", adj, tt.adj)
			}
		})
	}
}

// TestClusterAddrs: the VIP and the other members are reserved, this
// node's own address is not, and a node config without a cluster
// reserves nothing.
func TestClusterAddrs(t *testing.T) {
	got := clusterAddrs(checkCluster)
	want := reservedAddrs{
		netip.MustParseAddr("10.67.0.10"): "cluster.vip",
		netip.MustParseAddr("10.67.0.3"):  "cluster.nodes[1].address (mail-b)",
		netip.MustParseAddr("10.67.0.4"):  "cluster.nodes[2].address (arb)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("clusterAddrs(mail-a's config) = %v, want %v", got, want)
	}
	if got := clusterAddrs(&nodeconfig.Config{Hostname: "node1"}); len(got) != 0 {
		t.Errorf("clusterAddrs(no cluster) = %v, want none", got)
	}
}
