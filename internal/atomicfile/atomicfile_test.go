package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWhole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(got) != "new" || st.Mode().Perm() != 0o644 {
		t.Fatalf("Write = %q %v, want \"new\" 0644", got, st.Mode().Perm())
	}
}

func TestFailedFillKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFrom(p, 0o600, func(w io.Writer) error {
		if _, err := w.Write([]byte("half")); err != nil {
			return err
		}
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("WriteFrom with failing fill = nil error, want error")
	}
	got, _ := os.ReadFile(p)
	ents, _ := os.ReadDir(dir)
	if string(got) != "old" || len(ents) != 1 {
		t.Fatalf("after failed write: content %q, %d files; want \"old\", 1 file", got, len(ents))
	}
}

// TestStamp: a file's stamp changes when Write replaces it, even with
// the same content, and is "" for a missing file.
func TestStamp(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if s := Stamp(p); s != "" {
		t.Errorf("Stamp of a missing file = %q, want empty", s)
	}
	if err := Write(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := Stamp(p)
	if first == "" {
		t.Fatal("Stamp of a file is empty")
	}
	if err := Write(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if Stamp(p) == first {
		t.Errorf("Stamp did not change when Write replaced the file: %q", first)
	}
}
