// Package golden compares a test's output with a file kept beside the test
// (in testdata/) and rewrites that file when the test runs with -update.
// Only tests import it: the flag is registered with the test binary's.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"tandem/internal/atomicfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the output of this run")

// Check fails t unless got equals the golden file at path; under -update it
// writes got there instead (creating testdata/ if need be).
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.Write(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// Updating reports whether the test runs with -update, for a test that
// records other fixtures from a real run (captured event streams) then.
func Updating() bool { return *update }
