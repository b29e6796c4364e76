package mail

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// checkMilter: rspamd's milter not answering is a failure once it has
// answered since the container started, or when it has not answered
// within milterLoadLimit of the start (before, rspamd is loading); a root
// without rspamd has nothing to check.
func TestCheckMilter(t *testing.T) {
	w := &Workload{Root: t.TempDir(), started: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.checkMilter(ctx); err != nil {
		t.Fatalf("checkMilter without rspamd = %v, want nil", err)
	}
	for _, d := range []string{filepath.Dir(rspamdBinary), filepath.Dir(milterSocket)} {
		if err := os.MkdirAll(filepath.Join(w.rootfs(), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(w.rootfs(), rspamdBinary), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.checkMilter(ctx); err != nil || w.milterSeen {
		t.Fatalf("checkMilter while rspamd loads = %v (seen %v), want nil", err, w.milterSeen)
	}
	w.started = time.Now().Add(-milterLoadLimit - time.Second)
	if err := w.checkMilter(ctx); err == nil {
		t.Errorf("checkMilter with no answer %s after the container started = nil, want an error", milterLoadLimit)
	}
	w.started = time.Now()
	// A stand-in milter answering the option negotiation.
	l, err := net.Listen("unix", filepath.Join(w.rootfs(), milterSocket))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if cmd, err := readMilter(c); err == nil && cmd == milterOptNeg {
				_ = writeMilter(c, milterOptNeg, make([]byte, 12))
				_, _ = readMilter(c) // quit
			}
			c.Close()
		}
	}()
	if err := w.checkMilter(ctx); err != nil || !w.milterSeen {
		t.Fatalf("checkMilter with the milter answering = %v (seen %v)", err, w.milterSeen)
	}
	l.Close()
	if err := w.checkMilter(ctx); err == nil {
		t.Error("checkMilter after the milter answered once and went away = nil, want an error")
	}
}
