package ocf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/internal/netnstest"
	"tandem/internal/testenv"
)

func requireAgent(t *testing.T, typ string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(DefaultRoot, "resource.d", "heartbeat", typ)); err != nil {
		testenv.Unavailable(t, "needs Debian's resource-agents package (ocf:heartbeat:"+typ+")")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in, prov, typ string
		ok            bool
	}{
		{"ocf:heartbeat:Dummy", "heartbeat", "Dummy", true},
		{"ocf:btactic:zimbra", "btactic", "zimbra", true},
		{"lsb:postfix", "", "", false},
		{"ocf::Dummy", "", "", false},
	}
	for _, tt := range tests {
		p, ty, err := Parse(tt.in)
		if (err == nil) != tt.ok || p != tt.prov || ty != tt.typ {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, p, ty, err, tt.prov, tt.typ, tt.ok)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := map[string]time.Duration{"20s": 20 * time.Second, "20": 20 * time.Second, "2min": 2 * time.Minute, "100ms": 100 * time.Millisecond}
	for in, want := range tests {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestDummyLifecycle(t *testing.T) {
	requireAgent(t, "Dummy")
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "dummy.state")
	a := &Agent{Instance: "d1", Provider: "heartbeat", Type: "Dummy", Params: map[string]string{"state": state}}
	md, err := a.MetaData(ctx)
	if err != nil {
		t.Fatalf("MetaData: %v", err)
	}
	if md.Name != "Dummy" {
		t.Errorf("meta-data name = %q, want Dummy", md.Name)
	}
	if err := a.LoadDefaults(md); err != nil {
		t.Fatalf("LoadDefaults: %v", err)
	}
	if a.Timeouts["start"] != 20*time.Second {
		t.Errorf("start timeout from meta-data = %v, want 20s", a.Timeouts["start"])
	}
	if err := a.Validate(ctx); err != nil {
		t.Fatalf("validate-all: %v", err)
	}
	if err := a.Monitor(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Monitor before start = %v, want ErrNotRunning", err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := a.Monitor(ctx); err != nil {
		t.Fatalf("Monitor after start: %v", err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("state file after start: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop of a stopped resource: %v, want success", err)
	}
	if err := a.Monitor(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Monitor after stop = %v, want ErrNotRunning", err)
	}
}

func TestTimeoutKillsAgent(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "test")
	testenv.MkdirAll(t, dir)
	marker := filepath.Join(root, "survived")
	script := "#!/bin/sh\ncase $1 in start) sleep 3; touch " + marker + ";; esac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "Sleep"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Instance: "slow", Root: root, Provider: "test", Type: "Sleep",
		Timeouts: map[string]time.Duration{"start": 300 * time.Millisecond}}
	begin := time.Now()
	err := a.Start(context.Background())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Start of an agent sleeping 3s with a 300ms timeout = %v, want ErrTimeout", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Start returned after %v, want soon after the 300ms timeout", d)
	}
	time.Sleep(3500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the agent's child went on after the timeout: its process group was not killed")
	}
}

func TestExitCodes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "test")
	testenv.MkdirAll(t, dir)
	script := "#!/bin/sh\necho \"rc=$OCF_RESKEY_rc root=$OCF_ROOT inst=$OCF_RESOURCE_INSTANCE\"\nexit $OCF_RESKEY_rc\n"
	if err := os.WriteFile(filepath.Join(dir, "Exit"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rc := range []ExitCode{Success, ErrGeneric, ErrConfigured, NotRunning} {
		a := &Agent{Instance: "e", Root: root, Provider: "test", Type: "Exit", Params: map[string]string{"rc": strconv.Itoa(int(rc))}}
		code, out, err := a.Run(context.Background(), "monitor")
		if err != nil || code != rc {
			t.Errorf("Run(monitor) with rc=%d = %v, %v; want %v", rc, code, err, rc)
		}
		if want := "root=" + root + " inst=e"; !strings.Contains(out, want) {
			t.Errorf("agent saw %q, want it to contain %q", out, want)
		}
		err = a.Monitor(context.Background())
		if got := errors.Is(err, ErrNotRunning); got != (rc == NotRunning) {
			t.Errorf("Monitor with rc=%d: errors.Is(ErrNotRunning) = %v", rc, got)
		}
	}
}

func TestMissingAgent(t *testing.T) {
	a := &Agent{Instance: "x", Root: t.TempDir(), Provider: "heartbeat", Type: "Nope"}
	code, _, err := a.Run(context.Background(), "start")
	if err == nil || code != ErrInstalled {
		t.Errorf("Run of a missing agent = %v, %v; want OCF_ERR_INSTALLED and an error", code, err)
	}
}

func TestIPaddr2InNamespace(t *testing.T) {
	requireAgent(t, "IPaddr2")
	n := netnstest.New(t)
	ns := n.Host("h")
	peer := n.Host("p")
	n.Link(ns, "eth0", "192.0.2.1/24", peer, "eth0", "192.0.2.2/24")
	a := &Agent{Instance: "vip", Provider: "heartbeat", Type: "IPaddr2",
		Params: map[string]string{"ip": "192.0.2.100", "cidr_netmask": "24", "nic": "eth0"},
		Prefix: []string{"ip", "netns", "exec", ns}}
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("IPaddr2 start: %v", err)
	}
	if out := n.Run(ns, "ip", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "192.0.2.100/24") {
		t.Errorf("after start, eth0 has %q, want 192.0.2.100/24", out)
	}
	if err := a.Monitor(ctx); err != nil {
		t.Errorf("IPaddr2 monitor: %v", err)
	}
	n.Run(peer, "ping", "-c", "1", "-W", "2", "192.0.2.100")
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("IPaddr2 stop: %v", err)
	}
	if out := n.Run(ns, "ip", "-o", "addr", "show", "dev", "eth0"); strings.Contains(out, "192.0.2.100") {
		t.Errorf("after stop, eth0 still has the address: %q", out)
	}
	if err := a.Monitor(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("IPaddr2 monitor after stop = %v, want ErrNotRunning", err)
	}
}

func TestFilesystemTmpfs(t *testing.T) {
	requireAgent(t, "Filesystem")
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Instance: "fs", Provider: "heartbeat", Type: "Filesystem",
		Params: map[string]string{"device": "tmpfs", "directory": dir, "fstype": "tmpfs", "options": "size=4m"}}
	ctx := context.Background()
	t.Cleanup(func() { _ = a.Stop(ctx) })
	if err := a.Start(ctx); err != nil {
		t.Fatalf("Filesystem start: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write into the mounted tmpfs: %v", err)
	}
	if err := a.Monitor(ctx); err != nil {
		t.Errorf("Filesystem monitor: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Filesystem stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !os.IsNotExist(err) {
		t.Errorf("file still visible after stop (not unmounted): %v", err)
	}
	if err := a.Monitor(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Filesystem monitor after stop = %v, want ErrNotRunning", err)
	}
}
