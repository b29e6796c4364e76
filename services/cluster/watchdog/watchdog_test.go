package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wd")
	n := int64(0)
	r := &Recorder{Path: p, Now: func() time.Time { n++; return time.UnixMilli(n) }}
	for _, err := range []error{r.Arm(2 * time.Second), r.Pet(), r.Disarm()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "1 arm 2s\n2 pet\n3 disarm\n"; got != want {
		t.Errorf("recorded %q, want %q", got, want)
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{"/dev/watchdog", "*watchdog.Device"},
		{"record:/tmp/x", "*watchdog.Recorder"},
		{"none", "<nil>"},
		{"watchdog", "error"},
	}
	for _, tt := range tests {
		w, err := Open(tt.spec)
		got := "error"
		if err == nil {
			got = strings.TrimPrefix(typeName(w), "")
		}
		if got != tt.want {
			t.Errorf("Open(%q) = %s, want %s", tt.spec, got, tt.want)
		}
	}
}

func typeName(w Watchdog) string {
	switch w.(type) {
	case *Device:
		return "*watchdog.Device"
	case *Recorder:
		return "*watchdog.Recorder"
	case nil:
		return "<nil>"
	}
	return "?"
}

func TestDeviceMissing(t *testing.T) {
	d := &Device{Path: filepath.Join(t.TempDir(), "nowatchdog")}
	if err := d.Arm(time.Second); err == nil {
		t.Errorf("Arm on a missing device = nil, want an error")
	}
	if err := d.Pet(); err != nil {
		t.Errorf("Pet on an unarmed device = %v, want nil", err)
	}
}
