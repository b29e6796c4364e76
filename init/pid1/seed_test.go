package pid1

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/atomicfile"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns the regular files under root by relative name.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			b, _ := os.ReadFile(p)
			got[rel] = string(b)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return got
}

func TestSeedMove(t *testing.T) {
	seed, dst := t.TempDir(), t.TempDir()
	writeTree(t, seed, map[string]string{"node.yaml": "hostname: seeded\n", "cluster/ca.pem": "CA"})
	writeTree(t, dst, map[string]string{"node.yaml": "hostname: old\n", "keep": "kept"})
	var logged []string
	m := seedMover{write: atomicfile.Write, logf: func(f string, a ...any) { logged = append(logged, f) }}
	n, err := m.move(seed, dst)
	if err != nil || n != 2 {
		t.Fatalf("move = %d, %v; want 2, nil", n, err)
	}
	want := map[string]string{"node.yaml": "hostname: seeded\n", "cluster/ca.pem": "CA", "keep": "kept"}
	if got := readTree(t, dst); !maps.Equal(got, want) {
		t.Errorf("perm after move = %v, want %v", got, want)
	}
	for _, f := range []string{"node.yaml", "cluster/ca.pem"} {
		st, err := os.Stat(filepath.Join(dst, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("perm %s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}
	if ents, _ := os.ReadDir(seed); len(ents) != 0 {
		t.Errorf("seed dir after move holds %v, want nothing (emptied subdirectories removed)", ents)
	}
	if len(logged) != 2 {
		t.Errorf("logged %d lines, want one per file", len(logged))
	}
	if n, err := m.move(seed, dst); n != 0 || err != nil {
		t.Errorf("second move = %d, %v; want 0, nil", n, err)
	}
}

func TestSeedMoveMissingDir(t *testing.T) {
	m := seedMover{write: atomicfile.Write, logf: t.Logf}
	if n, err := m.move(filepath.Join(t.TempDir(), "none"), t.TempDir()); n != 0 || err != nil {
		t.Errorf("move(missing dir) = %d, %v; want 0, nil", n, err)
	}
}

// TestSeedMoveFailsHalfway fails the second write, as a full perm or a
// power cut would: the first file is moved, the second stays in the seed
// and perm keeps its old copy; a later run moves the rest.
func TestSeedMoveFailsHalfway(t *testing.T) {
	seed, dst := t.TempDir(), t.TempDir()
	writeTree(t, seed, map[string]string{"a.yaml": "A", "b.yaml": "B"})
	writeTree(t, dst, map[string]string{"b.yaml": "old B"})
	errFull := errors.New("no space left on device")
	writes := 0
	m := seedMover{logf: t.Logf, write: func(p string, d []byte, perm os.FileMode) error {
		if writes++; writes == 2 {
			return errFull
		}
		return atomicfile.Write(p, d, perm)
	}}
	n, err := m.move(seed, dst)
	if n != 1 || !errors.Is(err, errFull) || !strings.Contains(err.Error(), filepath.Join(seed, "b.yaml")) {
		t.Fatalf("move = %d, %v; want 1 and an error naming %s", n, err, filepath.Join(seed, "b.yaml"))
	}
	if got, want := readTree(t, seed), map[string]string{"b.yaml": "B"}; !maps.Equal(got, want) {
		t.Errorf("seed after failed move = %v, want %v", got, want)
	}
	if got, want := readTree(t, dst), map[string]string{"a.yaml": "A", "b.yaml": "old B"}; !maps.Equal(got, want) {
		t.Errorf("perm after failed move = %v, want %v", got, want)
	}
	m.write = atomicfile.Write
	if n, err := m.move(seed, dst); n != 1 || err != nil {
		t.Fatalf("retry = %d, %v; want 1, nil", n, err)
	}
	if got, want := readTree(t, dst), map[string]string{"a.yaml": "A", "b.yaml": "B"}; !maps.Equal(got, want) {
		t.Errorf("perm after retry = %v, want %v", got, want)
	}
}

// TestSeedMoveAfterCrashBeforeRemove: a crash after the write but before
// the removal leaves the file in both places; the next run writes it
// again and removes it.
func TestSeedMoveAfterCrashBeforeRemove(t *testing.T) {
	seed, dst := t.TempDir(), t.TempDir()
	writeTree(t, seed, map[string]string{"node.yaml": "new"})
	writeTree(t, dst, map[string]string{"node.yaml": "new"})
	m := seedMover{write: atomicfile.Write, logf: t.Logf}
	if n, err := m.move(seed, dst); n != 1 || err != nil {
		t.Fatalf("move = %d, %v; want 1, nil", n, err)
	}
	if got := readTree(t, seed); len(got) != 0 {
		t.Errorf("seed after move = %v, want empty", got)
	}
}
