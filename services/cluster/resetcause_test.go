package cluster

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/services/cluster/core"
)

// TestResetCause: an announced reset is logged with its figures and kept
// on perm; a pet in time removes it; one left behind is reported (and
// removed) at the next start.
func TestResetCause(t *testing.T) {
	var logs bytes.Buffer
	d := &Daemon{cfg: &Config{Watchdog: "record:x"}, st: State{Dir: t.TempDir()}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	now := time.Now()
	rc := core.ResetComing{At: now.Add(3 * time.Second), Renewed: now.Add(-4 * time.Second), Expiry: now.Add(4 * time.Second), Why: "no lease renewal answered in time"}
	cause := d.st.Path(resetCauseFile)

	d.resetComing(rc)
	if _, err := os.Stat(cause); err != nil {
		t.Fatalf("after resetComing: %v", err)
	}
	for _, want := range []string{"watchdog: no longer petted", "reset_in=", "lease_left=", "last_renewal_sent="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("resetComing's log lacks %q:\n%s", want, logs.String())
		}
	}
	d.watchdog("pet")
	if _, err := os.Stat(cause); !os.IsNotExist(err) {
		t.Errorf("after a pet in time the cause file is still there (%v)", err)
	}
	if !strings.Contains(logs.String(), "petted again") {
		t.Errorf("no line says the reset was averted:\n%s", logs.String())
	}

	d.resetComing(rc) // and this time the node is reset
	logs.Reset()
	d.reportLastReset()
	if !strings.Contains(logs.String(), "previous boot announced a watchdog reset") || !strings.Contains(logs.String(), rc.Why) {
		t.Errorf("reportLastReset logged:\n%s\nwant the announced reset and its cause", logs.String())
	}
	if _, err := os.Stat(cause); !os.IsNotExist(err) {
		t.Errorf("after reportLastReset the cause file is still there (%v)", err)
	}
}

// TestWatchdogCardReset reads the driver's boot status (WDIOF_CARDRESET).
func TestWatchdogCardReset(t *testing.T) {
	old := sysWatchdog
	sysWatchdog = t.TempDir()
	defer func() { sysWatchdog = old }()
	write := func(name, v string) {
		testenv.MkdirAll(t, filepath.Join(sysWatchdog, name))
		testenv.WriteFile(t, filepath.Join(sysWatchdog, name, "bootstatus"), []byte(v+"\n"), 0o644)
	}
	write("watchdog0", "32")
	write("watchdog1", "0")
	for _, c := range []struct{ dev, want string }{
		{"/dev/watchdog", "yes"}, {"/dev/watchdog0", "yes"}, {"/dev/watchdog1", "no"},
		{"/dev/watchdog2", "unknown"}, {"record:/tmp/x", "unknown"}, {"none", "unknown"},
	} {
		if got := watchdogCardReset(c.dev); got != c.want {
			t.Errorf("watchdogCardReset(%q) = %q, want %q", c.dev, got, c.want)
		}
	}
}
