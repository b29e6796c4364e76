package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/service"
	"tandem/internal/service/servicetest"
	"tandem/internal/testenv"
	"tandem/services/dns"
)

func freePort(t *testing.T) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func TestRunServesAndReloads(t *testing.T) {
	sock, notes := servicetest.NotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "node.yaml")
	testenv.WriteFile(t, cfg, []byte(`hostname: mail-a
cluster:
  name: zcs
  domain: mail.example.org
  vip: 192.0.2.10
  nodes:
    - {name: mail-a, address: 192.0.2.11}
    - {name: mail-b, address: 192.0.2.12}
    - {name: arbiter, address: 192.0.2.13, role: arbitrator}
network:
  links: [{name: eth0, addresses: [192.0.2.11/24]}]
dns:
  listen: ["`+addr+`"]
`), 0o644)
	view := filepath.Join(dir, "cluster.json")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", cfg, "-cluster", view, "-watch", "50ms"}, io.Discard, &logWriter{t})
	}()
	msg := servicetest.WaitMessage(t, notes, "READY=1", 10*time.Second)
	if !strings.Contains(msg, "STATUS=serving") || !strings.Contains(msg, "0 rate-limited, 0 loops refused") {
		t.Errorf("ready message = %q, want a STATUS with the counters", msg)
	}

	a := func() string {
		m := new(mdns.Msg)
		m.SetQuestion("mail.mail.example.org.", mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, addr)
		if err != nil || len(r.Answer) != 1 {
			return fmt.Sprintf("error %v %v", err, r)
		}
		return r.Answer[0].(*mdns.A).A.String()
	}
	if got := a(); got != "192.0.2.10" {
		t.Fatalf("service A = %s, want 192.0.2.10", got)
	}
	// The cluster daemon publishes a new VIP: picked up without a restart.
	testenv.WriteFile(t, view+".tmp", []byte(`{"vip":"192.0.2.99","nodes":[{"name":"mail-a","address":"192.0.2.11"}]}`), 0o644)
	if err := os.Rename(view+".tmp", view); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a() != "192.0.2.99" {
		if time.Now().After(deadline) {
			t.Fatalf("service A after the view changed = %s, want 192.0.2.99", a())
		}
		time.Sleep(50 * time.Millisecond)
	}
	servicetest.WaitMessage(t, notes, "WATCHDOG=1", 10*time.Second)
	// A broken view keeps the last zone serving.
	testenv.WriteFile(t, view, []byte(`{"vip":`), 0o644)
	servicetest.WaitMessage(t, notes, "reload failed", 10*time.Second)
	if got := a(); got != "192.0.2.99" {
		t.Errorf("service A with a broken view = %s, want the last good 192.0.2.99", got)
	}
	cancel()
	servicetest.WaitMessage(t, notes, "STOPPING=1", 10*time.Second)
	if err := <-done; err != nil {
		t.Errorf("run after cancel = %v, want nil", err)
	}
}

func TestRunNeedsConfig(t *testing.T) {
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil {
		t.Errorf("run() without -config = nil, want an error")
	}
	err := run(context.Background(), []string{"-config", "/nonexistent/node.yaml"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/node.yaml") {
		t.Errorf("run(-config missing) = %v, want an error naming the file", err)
	}
}

// A config whose forwarder leads back to the server, or that would answer
// the world by accident, never starts a server.
func TestRunRefusesLoopsAndTheWorld(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	for _, tc := range []struct{ name, dns, want string }{
		{"itself", fmt.Sprintf("  listen: [\"127.0.0.1:%d\"]\n  forwarders: [\"127.0.0.1:%d\"]\n", port, port),
			fmt.Sprintf("dns.forwarders[0]: 127.0.0.1:%d is this server (dns.listen[0] \"127.0.0.1:%d\"): forwarding to it loops", port, port)},
		{"the VIP", fmt.Sprintf("  listen: [\"127.0.0.1:%d\"]\n  forwarders: [192.0.2.10]\n", port),
			"dns.forwarders[0]: 192.0.2.10 is this cluster's VIP (cluster.vip): forwarding to it loops"},
		{"the world", fmt.Sprintf("  listen: [\"127.0.0.1:%d\"]\n  allow: [0.0.0.0/0]\n", port),
			`dns.allow[0]: "0.0.0.0/0" is every IPv4 address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "node.yaml")
			testenv.WriteFile(t, cfg, []byte("hostname: mail-a\ncluster:\n  name: zcs\n  domain: mail.example.org\n  vip: 192.0.2.10\ndns:\n"+tc.dns), 0o644)
			err := run(context.Background(), []string{"-config", cfg}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(-config with %s) = %v, want an error naming %s and %q", tc.name, err, cfg, tc.want)
			}
		})
	}
}

// A reload replaces dns.allow and dns.open_resolver.
func TestReloadReplacesPolicy(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "node.yaml")
	write := func(dnsSection string) {
		testenv.WriteFile(t, cfg, []byte("hostname: mail-a\ncluster:\n  name: zcs\n  domain: mail.example.org\n  vip: 192.0.2.10\ndns:\n"+dnsSection), 0o644)
	}
	write("  allow: [10.0.0.0/8]\n")
	d := &dnsd{configPath: cfg, log: slog.New(slog.DiscardHandler)}
	c, zone, err := d.load()
	if err != nil {
		t.Fatal(err)
	}
	srv := dns.New(dns.ConfigOf(c), zone)
	far := netip.MustParseAddr("198.51.100.7")
	ask := func() int {
		q := new(mdns.Msg)
		q.SetQuestion("mail.mail.example.org.", mdns.TypeA)
		return srv.Handle(context.Background(), far, false, q).Rcode
	}
	if got := ask(); got != mdns.RcodeRefused {
		t.Fatalf("query from %s before the reload = %s, want REFUSED", far, mdns.RcodeToString[got])
	}
	write("  allow: [0.0.0.0/0]\n  open_resolver: true\n")
	d.reload(srv, service.Notifier{Log: d.log})
	if got := ask(); got != mdns.RcodeSuccess {
		t.Errorf("query from %s after reloading allow 0.0.0.0/0 with open_resolver = %s, want NOERROR", far, mdns.RcodeToString[got])
	}
}

type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
