package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/service/servicetest"
	"tandem/internal/testenv"
)

// sntpServer answers on loopback with the host's time plus 3 s.
func sntpServer(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 48 {
				continue
			}
			var r [48]byte
			r[0], r[1] = 4<<3|4, 3
			copy(r[24:32], buf[40:48])
			d := time.Now().Add(3 * time.Second).Sub(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC))
			ts := uint64(d/time.Second)<<32 | uint64(d%time.Second)<<32/uint64(time.Second)
			binary.BigEndian.PutUint64(r[32:], ts)
			binary.BigEndian.PutUint64(r[40:], ts)
			_, _ = pc.WriteTo(r[:], from)
		}
	}()
	return pc.LocalAddr().String()
}

// The daemon measures (never sets: -set-clock=false), reports READY with
// the offset, and writes the status file.
func TestRunReportsOffset(t *testing.T) {
	sock, notes := servicetest.NotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "node.yaml")
	testenv.WriteFile(t, cfg, []byte("hostname: a\ntime:\n  servers: [\""+sntpServer(t)+"\"]\n  poll_interval: 100ms\n"), 0o644)
	status := filepath.Join(dir, "run", "time.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", cfg, "-status", status, "-set-clock=false"}, io.Discard, io.Discard)
	}()
	var msg string
	select {
	case msg = <-notes:
	case <-time.After(10 * time.Second):
		t.Fatal("no sd_notify message")
	}
	if !strings.Contains(msg, "READY=1") || !strings.Contains(msg, "STATUS=synchronised, offset 2.9") &&
		!strings.Contains(msg, "STATUS=synchronised, offset 3") {
		t.Errorf("first notify = %q, want READY=1 and STATUS with offset ~3s", msg)
	}
	// A few polls later, measure-only still sees the clock 3 s off: it
	// never touched the clock, and says so.
	time.Sleep(500 * time.Millisecond)
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Synchronised bool
		Offset       time.Duration
		Stepped      bool
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status file %s: %v", b, err)
	}
	if st.Synchronised || st.Offset < 2900*time.Millisecond || st.Offset > 3100*time.Millisecond || !st.Stepped {
		t.Errorf("status after later polls = %+v, want unsynchronised (still 3s off), offset ~3s, the boot step recorded", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel = %v", err)
	}
}
