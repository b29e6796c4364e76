package mail

import (
	"context"
	"crypto/sha256"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRspamdCacheOnVolume backs docs/mail.md's failover claim: rspamd's
// first start on a volume compiles its rules into Hyperscan databases in
// its directory on the volume, and the next start (a failover, on a node
// with the same CPU) finds them there and keeps them as they are (how
// much faster that start is, BenchmarkWorkload's first-start-ms and
// start-ms show). Hyperscan needs SSSE3: on a CPU without it the test
// fails, since the claim does not hold there.
func TestRspamdCacheOnVolume(t *testing.T) {
	cpu, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cpu), " ssse3") {
		t.Fatal("this CPU has no SSSE3: rspamd gets no Hyperscan and compiles its rules at every start (docs/mail.md)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb := newTestbed(t, map[string]string{ParamListen: tlsVIP})
	w := tb.w
	dbdir := filepath.Join(w.Root, "rootfs/var/lib/rspamd")
	start := func(first bool) {
		t.Helper()
		if err := tb.in(func() error { return w.Start(ctx) }); err != nil {
			t.Fatalf("Start: %v\n%s", err, readLog(w))
		}
		if first && !w.milterSeen {
			t.Errorf("the first Start on the volume returned before rspamd's milter answered")
		}
		for deadline := time.Now().Add(3 * time.Minute); !w.milterSeen; time.Sleep(time.Second) {
			if err := w.checkMilter(ctx); err != nil || time.Now().After(deadline) {
				t.Fatalf("rspamd's milter never answered: %v\n%s", err, readLog(w))
			}
		}
	}
	caches := func() map[string][32]byte {
		t.Helper()
		paths, err := filepath.Glob(filepath.Join(dbdir, "*.hsmp"))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][32]byte{}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m[filepath.Base(p)] = sha256.Sum256(b)
		}
		return m
	}
	start(true)
	first := caches()
	if len(first) == 0 {
		t.Fatalf("no Hyperscan cache (*.hsmp) in %s after rspamd's first start\n%s", dbdir, readLog(w))
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	w.milterSeen = false
	start(false)
	second := caches()
	if !maps.Equal(first, second) {
		t.Errorf("the Hyperscan cache changed with the second start: %d files before, %d after, or their contents differ", len(first), len(second))
	}
}
