package dns

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/netnstest"
	"tandem/internal/testenv"
)

// TestDigInNamespaces runs the server in-process on sockets inside a
// namespace, a real upstream resolver (dnsmasq) in another, and asks with
// dig from an allowed and from a refused network.
func TestDigInNamespaces(t *testing.T) {
	n := netnstest.New(t)
	testenv.RequireTool(t, "dig", "dnsmasq")
	srv, ok, bad, up := n.Host("srv"), n.Host("ok"), n.Host("bad"), n.Host("up")
	n.Link(srv, "eth0", "10.53.0.1/24", ok, "eth0", "10.53.0.2/24")
	n.Link(srv, "eth1", "10.54.0.1/24", bad, "eth0", "10.54.0.2/24")
	n.Link(srv, "eth2", "10.55.0.1/24", up, "eth0", "10.55.0.2/24")

	upstream := n.Cmd(context.Background(), up, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--listen-address=10.55.0.2", "--bind-interfaces",
		"--user=root", "--group=root", "--pid-file="+filepath.Join(t.TempDir(), "up.pid"),
		"--host-record=www.example.net,203.0.113.7", "--local-ttl=300")
	n.Start(upstream)

	s := New(Config{
		Policy: Policy{
			Allow:      []netip.Prefix{netip.MustParsePrefix("10.53.0.0/24")},
			Forwarders: []netip.AddrPort{netip.MustParseAddrPort("10.55.0.2:53")},
		},
		CacheSize: 100,
		Dial:      dialIn(n, srv),
	}, testZone())
	pcs, lns := listenIn(t, n, srv)
	serve(t, s, pcs, lns)

	server := map[string]string{ok: "@10.53.0.1", bad: "@10.54.0.1"}
	dig := func(ns string, args ...string) string {
		t.Helper()
		return n.Run(ns, "dig", append([]string{"+tries=1", "+time=3", server[ns]}, args...)...)
	}
	waitFor(t, "upstream dnsmasq", func() bool {
		out, _ := n.Cmd(context.Background(), srv, "dig", "+tries=1", "+time=1", "@10.55.0.2", "www.example.net").CombinedOutput()
		return strings.Contains(string(out), "203.0.113.7")
	})

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"mail.mail.example.org", "A"}, []string{"status: NOERROR", "flags: qr aa rd;", "mail.mail.example.org.\t60\tIN\tA\t192.0.2.10"}},
		{[]string{"mail.example.org", "MX"}, []string{"status: NOERROR", "IN\tMX\t10 mail.mail.example.org."}},
		{[]string{"mail.example.org", "SOA"}, []string{"status: NOERROR", "IN\tSOA\tmail-a.mail.example.org. hostmaster.mail.example.org."}},
		{[]string{"mail.example.org", "NS"}, []string{"IN\tNS\tmail-a.mail.example.org.", "IN\tNS\tmail-b.mail.example.org."}},
		{[]string{"mail-a.mail.example.org", "A"}, []string{"IN\tA\t192.0.2.11"}},
		{[]string{"gone.mail.example.org", "A"}, []string{"status: NXDOMAIN", "ANSWER: 0", "AUTHORITY: 1"}},
		{[]string{"+tcp", "mail.mail.example.org", "A"}, []string{"IN\tA\t192.0.2.10"}},
		{[]string{"www.example.net", "A"}, []string{"status: NOERROR", "www.example.net.", "IN\tA\t203.0.113.7", "ra;"}},
	} {
		out := dig(ok, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("dig %v from the allowed network: want %q in\n%s", tc.args, w, out)
			}
		}
	}

	// Not an open resolver: the other network is refused, for the zone too.
	for _, q := range []string{"www.example.net", "mail.mail.example.org"} {
		out := dig(bad, q, "A")
		if !strings.Contains(out, "status: REFUSED") || strings.Contains(out, "ANSWER: 1") {
			t.Errorf("dig %s from a network not allowed = \n%s\nwant REFUSED without answer", q, out)
		}
	}

	// Zone change picked up.
	z := testZone()
	z.VIP = netip.MustParseAddr("192.0.2.77")
	z.Members = append(z.Members, Member{"mail-c", netip.MustParseAddr("192.0.2.13")})
	s.SetZone(z)
	if out := dig(ok, "+short", "mail.mail.example.org", "A"); strings.TrimSpace(out) != "192.0.2.77" {
		t.Errorf("service A after the VIP change = %q, want 192.0.2.77", out)
	}
	if out := dig(ok, "+short", "mail-c.mail.example.org", "A"); strings.TrimSpace(out) != "192.0.2.13" {
		t.Errorf("new member's A = %q, want 192.0.2.13", out)
	}

	// Cached: with the upstream gone, the forwarded name still answers,
	// and a name never asked fails.
	upstream.Process.Kill()
	upstream.Wait()
	if out := dig(ok, "+short", "www.example.net", "A"); strings.TrimSpace(out) != "203.0.113.7" {
		t.Errorf("www.example.net with the upstream gone = %q, want the cached 203.0.113.7", out)
	}
	if out := dig(ok, "+time=5", "other.example.net", "A"); !strings.Contains(out, "status: SERVFAIL") {
		t.Errorf("uncached name with the upstream gone:\n%s\nwant SERVFAIL", out)
	}
}

// dialIn dials from inside namespace ns.
func dialIn(n *netnstest.Net, ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = n.Do(ns, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 10s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRateLimitInNamespaces sends a burst far above the rate limit from
// another host (namespaces: loopback is never limited) and gets some
// answers truncated or none, then a full answer over TCP.
func TestRateLimitInNamespaces(t *testing.T) {
	n := netnstest.New(t)
	srv, cl := n.Host("srv"), n.Host("cl")
	n.Link(srv, "eth0", "10.57.0.1/24", cl, "eth0", "10.57.0.2/24")
	s := New(Config{
		Policy:    Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.57.0.0/24")}},
		RateLimit: RateLimit{PerSecond: 5, Slip: 2},
	}, testZone())
	pcs, lns := listenIn(t, n, srv)
	serve(t, s, pcs, lns)

	tcp := func() *mdns.Msg {
		t.Helper()
		c := &mdns.Client{Net: "tcp", Timeout: slow}
		conn, err := dialIn(n, cl)(context.Background(), "tcp", "10.57.0.1:53")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		m, _, err := c.ExchangeWithConn(query("mail.mail.example.org.", mdns.TypeA), &mdns.Conn{Conn: conn})
		if err != nil {
			t.Fatalf("TCP query from %s: %v", cl, err)
		}
		return m
	}
	tcp() // the link is up, ARP done

	var pc net.PacketConn
	if err := n.Do(cl, func() (err error) {
		pc, err = net.ListenPacket("udp", "10.57.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := &net.UDPAddr{IP: net.IPv4(10, 57, 0, 1), Port: 53}
	const burst = 200
	for i := range burst {
		q := query("mail.mail.example.org.", mdns.TypeA)
		q.Id = uint16(i)
		b, _ := q.Pack()
		if _, err := pc.WriteTo(b, to); err != nil {
			t.Fatal(err)
		}
	}
	full, truncated := 0, 0
	buf := make([]byte, 4096)
	for full+truncated < burst {
		// Dropped answers never come: read until the server is quiet.
		if err := pc.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		var m mdns.Msg
		switch {
		case m.Unpack(buf[:k]) != nil:
			t.Errorf("answer %x does not unpack", buf[:k])
		case m.Truncated && len(m.Answer) == 0:
			truncated++
		case len(m.Answer) == 1:
			full++
		default:
			t.Errorf("answer %v: want an A or an empty truncated one", &m)
		}
	}
	t.Logf("%d queries at 5/s: %d answered, %d truncated, %d dropped", burst, full, truncated, burst-full-truncated)
	if truncated == 0 || full+truncated == burst {
		t.Errorf("burst of %d at a limit of 5/s: %d answered, %d truncated; want some truncated and some dropped", burst, full, truncated)
	}
	if m := tcp(); len(m.Answer) != 1 || m.Truncated {
		t.Errorf("TCP query after the burst = %v, want the A (TCP is not limited)", m)
	}
}

// listenIn opens the server's sockets on port 53 inside host's namespace.
func listenIn(t *testing.T, n *netnstest.Net, host string) ([]net.PacketConn, []net.Listener) {
	t.Helper()
	var pcs []net.PacketConn
	var lns []net.Listener
	if err := n.Do(host, func() (err error) {
		pcs, lns, err = Listen([]string{"0.0.0.0:53"})
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", host, err)
	}
	return pcs, lns
}
