package network

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/internal/netnstest"
	"tandem/internal/nodeconfig"
	"tandem/internal/testenv"
)

// The tests run the service in a child process (this test binary again)
// started inside a namespace, so every socket it opens (netlink, DHCP) is
// in that namespace and nothing touches the host's network. The child
// reports on stdout as JSON lines.

const helperEnv = "TANDEM_NETWORK_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		guestMain() // the QEMU guest of TestGuestBondVLAN; never returns
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := helperMain(mode, os.Getenv("TANDEM_NETWORK_TEST_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.LockMachine("services/network")
	os.Exit(m.Run())
}

// fileHostname keeps the "kernel" host name in a file, so tests never set
// the host's.
type fileHostname string

func (f fileHostname) Hostname() (string, error) {
	b, err := os.ReadFile(string(f))
	if os.IsNotExist(err) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

func (f fileHostname) SetHostname(name string) error {
	return os.WriteFile(string(f), []byte(name), 0o644)
}

func helperMain(mode, dir string) error {
	cfg, err := nodeconfig.LoadFile(filepath.Join(dir, "node.yaml"))
	if err != nil {
		return err
	}
	svc, err := New(Options{
		Paths:    Paths{Hosts: filepath.Join(dir, "hosts"), Resolv: filepath.Join(dir, "resolv.conf"), Hostname: filepath.Join(dir, "hostname")},
		Hostname: fileHostname(filepath.Join(dir, "kernel-hostname")),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "network"),
	})
	if err != nil {
		return err
	}
	defer func() { _ = svc.Close() }()
	enc := json.NewEncoder(os.Stdout)
	switch mode {
	case "apply":
		first, err := svc.Apply(cfg)
		if err != nil {
			return err
		}
		second, err := svc.Apply(cfg)
		if err != nil {
			return err
		}
		state, err := svc.State()
		if err != nil {
			return err
		}
		return enc.Encode(applyReport{first, second, state})
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		return svc.Run(ctx, cfg, func(e Event) { _ = enc.Encode(e) })
	}
	return fmt.Errorf("unknown mode %q", mode)
}

type applyReport struct {
	First, Second []Change
	State         []LinkState
}

// helper starts the child in namespace ns with the node config text.
func helper(t testing.TB, n *netnstest.Net, ns, mode, config string) (*exec.Cmd, string, *bufio.Scanner) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := n.Cmd(context.Background(), ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TANDEM_NETWORK_TEST_DIR="+dir)
	cmd.Stderr = &testWriter{t: t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n.Start(cmd)
	return cmd, dir, bufio.NewScanner(out)
}

// testWriter logs the child's stderr and keeps it.
type testWriter struct {
	t   testing.TB
	mu  sync.Mutex
	buf strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	w.t.Logf("child: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *testWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// nextEvent reads events until one of kind arrives, or fails after d.
func nextEvent(t testing.TB, sc *bufio.Scanner, kind EventKind, d time.Duration) Event {
	t.Helper()
	type res struct {
		e   Event
		err error
	}
	ch := make(chan res, 1)
	go func() {
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				ch <- res{err: fmt.Errorf("decode %q: %w", sc.Text(), err)}
				return
			}
			if e.Kind == kind {
				ch <- res{e: e}
				return
			}
		}
		ch <- res{err: fmt.Errorf("child ended: %v", errOr(sc.Err(), io.EOF))}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("waiting for %s event: %v", kind, r.err)
		}
		return r.e
	case <-time.After(d):
		t.Fatalf("no %s event within %v", kind, d)
	}
	return Event{}
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
