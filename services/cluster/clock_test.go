package cluster

import (
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

func TestReadClock(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "time.json")
	if c := readClock(p); c.Synced || c.Detail != "no status from the time service yet" {
		t.Errorf("no file: %+v", c)
	}
	testenv.WriteFile(t, p, []byte(`{"synchronised": true, "offset": 1200000, "server": "10.77.0.1", "last_sync": "2026-12-01T12:00:00Z"}`), 0o644)
	if c := readClock(p); !c.Synced || c.Detail != "synchronised, offset 1.2ms (10.77.0.1)" {
		t.Errorf("synchronised: %+v", c)
	}
	testenv.WriteFile(t, p, []byte(`{"synchronised": false, "error": "no NTP server answered"}`), 0o644)
	if c := readClock(p); c.Synced || c.Detail != "unsynchronised: no NTP server answered" {
		t.Errorf("unsynchronised: %+v", c)
	}
	testenv.WriteFile(t, p, []byte(`{"synchronised": tru`), 0o644)
	if c := readClock(p); c.Synced || !strings.Contains(c.Detail, "time.json") {
		t.Errorf("broken file: %+v", c)
	}
}
