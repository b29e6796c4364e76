package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/service/servicetest"
	"tandem/internal/testenv"
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
  nodes: [{name: mail-a, address: 192.0.2.11}]
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
	if !strings.Contains(msg, "STATUS=serving") {
		t.Errorf("ready message = %q, want a STATUS", msg)
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

type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
