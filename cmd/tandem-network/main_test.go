package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/netnstest"
	"tandem/internal/service/servicetest"
	"tandem/internal/testenv"
)

// The daemon runs as a child (this test binary again) inside a namespace,
// as PID 1 would run it, so it never touches the host's network.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_NETWORK_CMD_CHILD") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := run(ctx, strings.Fields(os.Getenv("TANDEM_NETWORK_CMD_ARGS")), os.Stdout, os.Stderr); err != nil {
			_, _ = os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Logf("child: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDaemonDHCPReadyStatusRelease: READY comes after the lease, with the
// link's state in STATUS and in the status file; SIGTERM releases the
// lease and the daemon exits 0.
func TestDaemonDHCPReadyStatusRelease(t *testing.T) {
	n := netnstest.New(t)
	testenv.RequireTool(t, "dnsmasq")
	node, srv := n.Host("node"), n.Host("dhcp")
	n.Link(node, "eth0", "", srv, "eth0", "10.68.0.1/24")
	dir := t.TempDir()
	n.Start(n.Cmd(t.Context(), srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-ping",
		"--user=root", "--group=root", "--pid-file="+filepath.Join(dir, "pid"), "--interface=eth0", "--bind-interfaces",
		"--dhcp-range=10.68.0.50,10.68.0.60,255.255.255.0,2m", "--dhcp-leasefile="+filepath.Join(dir, "leases")))

	cfg := filepath.Join(dir, "node.yaml")
	testenv.WriteFile(t, cfg, []byte("hostname: n1\nnetwork:\n  links: [{name: eth0, dhcp: true, mtu: 1450}]\n"), 0o644)
	etc := filepath.Join(dir, "etc")
	testenv.MkdirAll(t, etc)
	status := filepath.Join(dir, "run", "network.json")
	sock, notes := servicetest.NotifySocket(t)
	cmd := n.Cmd(t.Context(), node, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_NETWORK_CMD_CHILD=1", "NOTIFY_SOCKET="+sock,
		"TANDEM_NETWORK_CMD_ARGS=-config "+cfg+" -etc "+etc+" -status "+status+" -set-hostname=false")
	cmd.Stderr = &logWriter{t}
	cmd.Stdout = io.Discard
	n.Start(cmd)

	msg := servicetest.WaitMessage(t, notes, "READY=1", 20*time.Second)
	if !strings.Contains(msg, "STATUS=eth0 up 10.68.0.") {
		t.Errorf("READY message = %q, want STATUS with eth0 up and its lease", msg)
	}
	var st struct {
		Links []struct {
			Name      string
			MTU       int
			Addresses []string
		}
		Leases []struct{ Iface string }
	}
	b, err := os.ReadFile(status)
	if err != nil || json.Unmarshal(b, &st) != nil || len(st.Leases) != 1 || len(st.Links) != 1 ||
		st.Links[0].MTU != 1450 || len(st.Links[0].Addresses) != 1 {
		t.Errorf("status file = %s (%v), want eth0 with mtu 1450, one address, one lease", b, err)
	}
	if h, _ := os.ReadFile(filepath.Join(etc, "hostname")); string(h) != "n1\n" {
		t.Errorf("etc/hostname = %q, want n1", h)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	servicetest.WaitMessage(t, notes, "STOPPING=1", 20*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Errorf("daemon exit after SIGTERM = %v, want 0", err)
	}
	if out := n.Run(node, "ip", "-4", "-o", "addr", "show", "dev", "eth0"); strings.Contains(out, "10.68.0.") {
		t.Errorf("address after stop = %q, want the lease released", out)
	}
}
