package network

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/golden"
	"tandem/internal/netnstest"
	"tandem/internal/testenv"
)

const staticConfig = `
hostname: mail-a
cluster:
  name: zcs
  domain: mail.example.org
  vip: 10.70.0.10
  nodes:
    - {name: mail-a, address: 10.70.0.2}
    - {name: mail-b, address: 10.70.0.3}
    - {name: arbiter, address: 10.70.0.4, role: arbitrator}
network:
  links:
    - name: lan0
      mac: "52:54:00:70:00:02"
      mtu: 1400
      addresses: [10.70.0.2/24, "fd70::2/64"]
  routes:
    - {to: 10.71.0.0/16, via: 10.70.0.1}
    - {to: 0.0.0.0/0, via: 10.70.0.1, metric: 50}
    - {to: 10.72.0.0/16, dev: lan0}
    - {to: "fd71::/64", via: "fd70::1"}
  nameservers: [10.70.0.1]
  search: [mail.example.org]
`

// TestStaticApply applies a static config in a namespace: the link found
// by MAC is renamed, gets its MTU, addresses and routes, the files are
// written, and the second Apply changes nothing.
func TestStaticApply(t *testing.T) {
	n := netnstest.New(t)
	node, peer := n.Host("node"), n.Host("peer")
	n.Link(node, "eth0", "", peer, "eth0", "10.70.0.1/24")
	n.Run(node, "ip", "link", "set", "eth0", "down")
	n.Run(node, "ip", "link", "set", "eth0", "address", "52:54:00:70:00:02")

	cmd, dir, sc := helper(t, n, node, "apply", staticConfig)
	var rep applyReport
	if !sc.Scan() {
		cmd.Wait()
		t.Fatalf("helper printed no report")
	}
	if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
		t.Fatalf("decode report %q: %v", sc.Text(), err)
	}
	cmd.Wait()

	joined := func(cs []Change) string {
		var s []string
		for _, c := range cs {
			s = append(s, string(c))
		}
		return strings.Join(s, "\n")
	}
	for _, want := range []string{"lan0: renamed from eth0", "lan0: mtu 1500 -> 1400", "lan0: up", "lan0: address 10.70.0.2/24",
		"lan0: address fd70::2/64", "route 10.71.0.0/16 via 10.70.0.1", "route 0.0.0.0/0 via 10.70.0.1", "route 10.72.0.0/16 dev lan0", "route fd71::/64 via fd70::1",
		"hostname  -> mail-a", "wrote " + filepath.Join(dir, "hosts")} {
		if !strings.Contains(joined(rep.First), want) {
			t.Errorf("first Apply changes =\n%s\nwant a line with %q", joined(rep.First), want)
		}
	}
	if len(rep.Second) != 0 {
		t.Errorf("second Apply changes = %q, want none", rep.Second)
	}

	addr := n.Run(node, "ip", "-o", "addr", "show", "dev", "lan0")
	for _, want := range []string{"inet 10.70.0.2/24 brd 10.70.0.255", "inet6 fd70::2/64"} {
		if !strings.Contains(addr, want) {
			t.Errorf("ip addr show dev lan0 = %q, want %q", addr, want)
		}
	}
	if link := n.Run(node, "ip", "link", "show", "lan0"); !strings.Contains(link, "mtu 1400") || !strings.Contains(link, "UP") {
		t.Errorf("ip link show lan0 = %q, want mtu 1400 and UP", link)
	}
	routes := n.Run(node, "ip", "route")
	for _, want := range []string{"default via 10.70.0.1 dev lan0 proto static metric 50", "10.71.0.0/16 via 10.70.0.1 dev lan0 proto static",
		"10.72.0.0/16 dev lan0 proto static scope link"} {
		if !strings.Contains(routes, want) {
			t.Errorf("ip route =\n%s\nwant %q", routes, want)
		}
	}
	if out := n.Run(node, "ip", "-6", "route"); !strings.Contains(out, "fd71::/64 via fd70::1 dev lan0 proto static") {
		t.Errorf("ip -6 route =\n%s\nwant fd71::/64 via fd70::1", out)
	}
	if out := n.Run(node, "ping", "-c", "1", "-W", "2", "10.70.0.1"); !strings.Contains(out, "1 received") {
		t.Errorf("ping peer = %q, want 1 received", out)
	}
	if link := n.Run(node, "ip", "link", "show", "lan0"); !strings.Contains(link, "state UP") {
		t.Errorf("ip link show lan0 = %q, want state UP", link)
	}

	var lan0 *LinkState
	for i := range rep.State {
		if rep.State[i].Name == "lan0" {
			lan0 = &rep.State[i]
		}
	}
	if lan0 == nil || !lan0.Up || lan0.MTU != 1400 || lan0.MAC != "52:54:00:70:00:02" ||
		strings.Join(lan0.Addresses, " ") != "10.70.0.2/24 fd70::2/64" {
		t.Errorf("State() lan0 = %+v, want up, mtu 1400, the MAC and both addresses", lan0)
	}

	for _, f := range []string{"hosts", "resolv.conf", "hostname", "kernel-hostname"} {
		checkFile(t, filepath.Join(dir, f), filepath.Join("testdata", "static."+f))
	}
}

// A config naming a link the node does not have fails, naming it.
func TestApplyMissingLink(t *testing.T) {
	n := netnstest.New(t)
	node := n.Host("node")
	cmd, _, _ := helper(t, n, node, "apply", "hostname: a\nnetwork:\n  links: [{name: nope0, addresses: [10.9.0.1/24]}]\n")
	err := cmd.Wait()
	stderr := cmd.Stderr.(*testWriter).String()
	if err == nil || !strings.Contains(stderr, "apply match links: nope0: no such link") {
		t.Errorf("apply with a missing link = %v, stderr %q; want a failure naming nope0", err, stderr)
	}
}

func checkFile(t *testing.T, path, goldenPath string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, goldenPath, got)
}

const dhcpConfig = `
hostname: node1
network:
  links:
    - {name: eth0, dhcp: true}
  nameservers: [127.0.0.1]
`

// dnsmasqDHCP starts dnsmasq as a DHCP server in ns on 10.67.0.1 with a
// two-minute lease (dnsmasq's minimum) and T1 of 3 s, so that a renewal
// comes quickly. It returns the lease file's path.
func dnsmasqDHCP(t testing.TB, n *netnstest.Net, ns string) string {
	t.Helper()
	_, leases := startDnsmasq(t, n, ns, "--dhcp-range=10.67.0.50,10.67.0.60,255.255.255.0,2m",
		"--dhcp-option=option:router,10.67.0.1", "--dhcp-option=option:dns-server,10.67.0.53",
		"--dhcp-option=option:T1,3s", "--dhcp-option=option:T2,100s")
	return leases
}

// startDnsmasq starts dnsmasq as a DHCP server on ns's eth0 with the given
// DHCP arguments and returns it and its lease file's path.
func startDnsmasq(t testing.TB, n *netnstest.Net, ns string, dhcp ...string) (*exec.Cmd, string) {
	t.Helper()
	testenv.RequireTool(t, "dnsmasq")
	dir := t.TempDir()
	leases := filepath.Join(dir, "leases")
	args := append([]string{"--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-ping",
		"--log-dhcp", "--log-facility=-",
		"--user=root", "--group=root", "--pid-file=" + filepath.Join(dir, "pid"),
		"--interface=eth0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-leasefile=" + leases}, dhcp...)
	cmd := n.Cmd(t.Context(), ns, "dnsmasq", args...)
	cmd.Stderr = &testWriter{t: t}
	n.Start(cmd)
	return cmd, leases
}

// TestDHCPLeaseRenewRelease gets a lease from dnsmasq, sees it applied
// (address, default route, resolv.conf), renewed, and released at
// shutdown (gone from the interface and from dnsmasq's lease file).
func TestDHCPLeaseRenewRelease(t *testing.T) {
	n := netnstest.New(t)
	node, srv := n.Host("node"), n.Host("dhcp")
	n.Link(node, "eth0", "", srv, "eth0", "10.67.0.1/24")
	n.Run(node, "ip", "link", "set", "eth0", "address", "52:54:00:67:00:01")
	leases := dnsmasqDHCP(t, n, srv)

	cmd, dir, sc := helper(t, n, node, "run", dhcpConfig)
	nextEvent(t, sc, EventApplied, 10*time.Second)
	ev := nextEvent(t, sc, EventLease, 30*time.Second)
	l := ev.Lease
	if l == nil || !regexp.MustCompile(`^10\.67\.0\.(5\d|60)/24$`).MatchString(l.Addr.String()) || l.Router.String() != "10.67.0.1" {
		t.Fatalf("lease = %+v, want 10.67.0.50-60/24 via 10.67.0.1", l)
	}
	t.Logf("time to lease: %v", ev.Took)
	ip := l.Addr.Addr().String()
	if out := n.Run(node, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet "+l.Addr.String()) {
		t.Errorf("ip addr after lease = %q, want %s", out, l.Addr)
	}
	if out := n.Run(node, "ip", "route"); !strings.Contains(out, "default via 10.67.0.1 dev eth0 proto static metric 1024") {
		t.Errorf("ip route after lease = %q, want the lease's default route", out)
	}
	resolv, _ := os.ReadFile(filepath.Join(dir, "resolv.conf"))
	if !strings.Contains(string(resolv), "nameserver 127.0.0.1\nnameserver 10.67.0.53\n") {
		t.Errorf("resolv.conf after lease =\n%s\nwant the static then the leased nameserver", resolv)
	}
	if out := n.Run(node, "ping", "-c", "1", "-W", "2", "10.67.0.1"); !strings.Contains(out, "1 received") {
		t.Errorf("ping server over the lease = %q", out)
	}
	if b, _ := os.ReadFile(leases); !strings.Contains(string(b), "52:54:00:67:00:01 "+ip) {
		t.Errorf("dnsmasq lease file = %q, want our MAC with %s", b, ip)
	}

	ev = nextEvent(t, sc, EventRenewed, 30*time.Second)
	if ev.Lease.Renewals != 1 || ev.Lease.Addr != l.Addr || !ev.Lease.Obtained.After(l.Obtained) {
		t.Errorf("renewed lease = %+v, want renewal 1 of %s, obtained after %v", ev.Lease, l.Addr, l.Obtained)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	nextEvent(t, sc, EventReleased, 10*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper exit after SIGTERM: %v", err)
	}
	if out := n.Run(node, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); strings.Contains(out, ip) {
		t.Errorf("ip addr after release = %q, want %s gone", out, ip)
	}
	waitFile(t, leases, func(b string) bool { return !strings.Contains(b, "52:54:00:67:00:01") },
		"dnsmasq lease file still holds the released lease")
	resolv, _ = os.ReadFile(filepath.Join(dir, "resolv.conf"))
	if strings.Contains(string(resolv), "10.67.0.53") {
		t.Errorf("resolv.conf after release =\n%s\nwant the leased nameserver gone", resolv)
	}
}

func waitFile(t *testing.T, path string, ok func(string) bool, msg string) {
	t.Helper()
	var b []byte
	for range 50 {
		b, _ = os.ReadFile(path)
		if ok(string(b)) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s: %q", msg, b)
}

// badReplyConfig is the arbitrator of a cluster whose VIP and data nodes
// sit on the DHCP server's subnet.
const badReplyConfig = `
hostname: arb
cluster:
  name: zcs
  domain: mail.example.org
  vip: 10.67.0.10
  nodes:
    - {name: mail-a, address: 10.67.0.2}
    - {name: mail-b, address: 10.67.0.3}
    - {name: arb, address: 10.67.0.4, role: arbitrator}
network:
  links:
    - {name: eth0, dhcp: true}
`

// TestDHCPBadReplies: dnsmasq first offers the node the cluster's VIP,
// which is refused (logged with the field and the value) without touching
// the interface, again and again; then a dnsmasq offering an infinite
// lease with a loopback name server gives a lease clamped to seven days
// with the loopback server dropped from the lease and resolv.conf.
func TestDHCPBadReplies(t *testing.T) {
	n := netnstest.New(t)
	node, srv := n.Host("node"), n.Host("dhcp")
	n.Link(node, "eth0", "", srv, "eth0", "10.67.0.1/24")
	const mac = "52:54:00:67:00:04"
	n.Run(node, "ip", "link", "set", "eth0", "address", mac)
	vip, _ := startDnsmasq(t, n, srv, "--dhcp-range=10.67.0.50,10.67.0.60,255.255.255.0,2m",
		"--dhcp-host="+mac+",10.67.0.10", "--dhcp-option=option:router,10.67.0.1")

	cmd, dir, sc := helper(t, n, node, "run", badReplyConfig)
	stderr := cmd.Stderr.(*testWriter)
	nextEvent(t, sc, EventApplied, 10*time.Second)
	refused := `msg="dhcp reply refused" component=network iface=eth0 server=10.67.0.1 field=yiaddr value=10.67.0.10 reason="is the cluster's cluster.vip in the node config"`
	waitLog(t, stderr, refused, 2)
	if out := n.Run(node, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); strings.Contains(out, "inet ") {
		t.Errorf("ip addr after refused offers = %q, want no IPv4 address", out)
	}
	vip.Process.Kill()
	_ = vip.Wait() // killed

	startDnsmasq(t, n, srv, "--dhcp-range=10.67.0.50,10.67.0.60,255.255.255.0,infinite",
		"--dhcp-option=option:router,10.67.0.1", "--dhcp-option=option:dns-server,127.0.0.1,10.67.0.53")
	l := nextEvent(t, sc, EventLease, 60*time.Second).Lease
	if l == nil || !regexp.MustCompile(`^10\.67\.0\.(5\d|60)/24$`).MatchString(l.Addr.String()) || l.Duration != maxLeaseTime ||
		strings.Join(l.DNS, " ") != "10.67.0.53" {
		t.Fatalf("lease = %+v, want 10.67.0.50-60/24 for %v with DNS 10.67.0.53 only", l, maxLeaseTime)
	}
	for _, want := range []string{`msg="dhcp reply adjusted" component=network iface=eth0 field="lease time" value=1193046h28m15s used=168h0m0s`,
		`msg="dhcp reply adjusted" component=network iface=eth0 field=dns value=127.0.0.1 used="dropped (not a usable server address)"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("helper's log has no line with %s", want)
		}
	}
	resolv, _ := os.ReadFile(filepath.Join(dir, "resolv.conf"))
	if !strings.Contains(string(resolv), "nameserver 10.67.0.53\n") || strings.Contains(string(resolv), "127.0.0.1") {
		t.Errorf("resolv.conf after lease =\n%s\nwant nameserver 10.67.0.53 and not 127.0.0.1", resolv)
	}
	if out := n.Run(node, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet "+l.Addr.String()) {
		t.Errorf("ip addr after lease = %q, want %s", out, l.Addr)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	nextEvent(t, sc, EventReleased, 10*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper exit after SIGTERM: %v", err)
	}
}

// waitLog waits until the child's log holds line (a part of one) count
// times.
func waitLog(t *testing.T, w *testWriter, line string, count int) {
	t.Helper()
	for range 300 {
		if strings.Count(w.String(), line) >= count {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("child's log holds %d lines with %s, want %d:\n%s", strings.Count(w.String(), line), line, count, w.String())
}
