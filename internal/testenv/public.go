package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// PublicDir makes a directory that every user can enter (mode 0755, and
// every directory above it searchable by others), for a test that runs
// something as another user: t.TempDir and the go tool's build directory
// are reachable by their owner only. It is removed at the end of the
// test; the test fails if os.TempDir is not searchable by others.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tandem-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by other users (%v): set TMPDIR to a directory that is", d, err)
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}
