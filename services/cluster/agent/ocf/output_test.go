package ocf

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

// TestCapped: writes of any size in any number of pieces keep the first
// and the last half of the bound, in order, with the count of what fell
// between.
func TestCapped(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"empty", nil, ""},
		{"fits", []string{"ab", "cd"}, "abcd"},
		{"exactly full", []string{"abcdefgh"}, "abcdefgh"},
		{"one write over", []string{"abcdefghij"}, "abcd\n[ocf: 2 bytes of output dropped]\nghij"},
		{"ring wraps", []string{"abcd", "ef", "gh", "ij", "k"}, "abcd\n[ocf: 3 bytes of output dropped]\nhijk"},
		{"huge write", []string{"ab", strings.Repeat("x", 100) + "wxyz"}, "abxx\n[ocf: 98 bytes of output dropped]\nwxyz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCapped(8)
			for _, w := range tt.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v; want %d, nil", len(w), n, err, len(w))
				}
			}
			if got := c.String(); got != tt.want {
				t.Errorf("after writes %q: String() = %q, want %q", tt.writes, got, tt.want)
			}
		})
	}
}

// writeAgent writes a shell script agent test:Type under a new OCF root
// and returns the root.
func writeAgent(t *testing.T, typ, script string) string {
	t.Helper()
	root := t.TempDir()
	testenv.WriteFile(t, filepath.Join(root, "resource.d", "test", typ), []byte("#!/bin/sh\n"+script), 0o755)
	return root
}

// TestRunawayOutputBounded: an agent printing 16 MiB before failing
// leaves the daemon holding at most MaxOutput bytes of it (the start, the
// end and a count of the rest), and allocating nowhere near 16 MiB on the
// way.
func TestRunawayOutputBounded(t *testing.T) {
	testenv.RequireTool(t, "yes", "head")
	const flood = 16 << 20
	root := writeAgent(t, "Flood", fmt.Sprintf("echo FIRST\nyes 0123456789 | head -c %d\necho LAST\nexit 1\n", flood))
	a := &Agent{Instance: "flood", Root: root, Provider: "test", Type: "Flood"}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, out, err := a.Run(context.Background(), "start")
	runtime.ReadMemStats(&after)
	if err != nil || code != ErrGeneric {
		t.Fatalf("Run(start) of the flooding agent = %v, %v; want OCF_ERR_GENERIC", code, err)
	}
	dropped := len("FIRST\n") + flood + len("LAST\n") - MaxOutput
	marker := fmt.Sprintf("\n[ocf: %d bytes of output dropped]\n", dropped)
	if len(out) != MaxOutput+len(marker) {
		t.Errorf("Run(start) output is %d bytes, want %d (MaxOutput and the marker)", len(out), MaxOutput+len(marker))
	}
	if !strings.HasPrefix(out, "FIRST\n0123456789\n") || !strings.HasSuffix(out, "LAST\n") || !strings.Contains(out, marker) {
		t.Errorf("Run(start) output = %q...%q, want FIRST at the start, LAST at the end and the marker %q",
			out[:min(len(out), 40)], out[max(0, len(out)-40):], marker)
	}
	// Unbounded, the buffer would have grown past the 16 MiB printed.
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("Run(start) of a 16 MiB flood allocated %d bytes, want under 4 MiB", got)
	}

	var re *ResultError
	if err := a.Start(context.Background()); !errors.As(err, &re) || len(re.Output) > MaxOutput+len(marker) {
		t.Errorf("Start of the flooding agent = %v, want a ResultError with at most %d bytes of output", err, MaxOutput+len(marker))
	}
}

// TestMetaDataTooLong: meta-data cut to MaxOutput cannot be parsed, and
// MetaData says so instead of reporting broken XML.
func TestMetaDataTooLong(t *testing.T) {
	testenv.RequireTool(t, "yes", "head")
	root := writeAgent(t, "Big", fmt.Sprintf("echo '<resource-agent name=\"Big\"><longdesc>'\nyes x | head -c %d\necho '</longdesc></resource-agent>'\n", 2*MaxOutput))
	a := &Agent{Instance: "big", Root: root, Provider: "test", Type: "Big"}
	if _, err := a.MetaData(context.Background()); !errors.Is(err, ErrOutputTooLong) {
		t.Errorf("MetaData of a %d-byte meta-data = %v, want ErrOutputTooLong", 2*MaxOutput, err)
	}
}
