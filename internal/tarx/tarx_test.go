package tarx

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
)

type ent struct {
	h    tar.Header
	data string
}

func stream(t *testing.T, es ...ent) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, e := range es {
		e.h.Size = int64(len(e.data))
		if err := w.WriteHeader(&e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

var mtime = time.Unix(1700000000, 0)

func sample(t *testing.T) *bytes.Buffer {
	return stream(t,
		ent{h: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		ent{h: tar.Header{Typeflag: tar.TypeDir, Name: "./usr/sbin/", Mode: 0o755, ModTime: mtime}},
		ent{h: tar.Header{Typeflag: tar.TypeReg, Name: "./usr/sbin/postdrop", Mode: 0o2555, Gid: 7, ModTime: mtime}, data: "elf"},
		ent{h: tar.Header{Typeflag: tar.TypeLink, Name: "./usr/sbin/postqueue", Linkname: "./usr/sbin/postdrop"}},
		ent{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "./usr/bin/mailq", Linkname: "../sbin/postqueue", ModTime: mtime}},
		ent{h: tar.Header{Typeflag: tar.TypeFifo, Name: "./run/fifo", Mode: 0o600}},
	)
}

func TestExtractUnprivileged(t *testing.T) {
	dir := t.TempDir()
	n, err := Extract(context.Background(), sample(t), dir, Options{})
	if err != nil || n != 5 {
		t.Fatalf("Extract = %d, %v; want 5 entries (the root skipped), nil", n, err)
	}
	st, err := os.Stat(filepath.Join(dir, "usr/sbin/postdrop"))
	if err != nil || st.Mode() != 0o755 {
		t.Fatalf("postdrop: %v, %v; want mode 0755 (r-x plus the owner's w, no set-ID)", st.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "usr/bin/mailq")); err != nil || string(b) != "elf" {
		t.Errorf("mailq through symlink and hard link = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "run/fifo")); !os.IsNotExist(err) {
		t.Errorf("fifo: %v, want it skipped", err)
	}
}

func TestExtractOwners(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	_, err := Extract(context.Background(), sample(t), dir, Options{Owners: true})
	if err == nil || !strings.Contains(err.Error(), "unsupported type") {
		t.Fatalf("Extract with a fifo = %v, want an unsupported-type error", err)
	}
	st, err := os.Stat(filepath.Join(dir, "usr/sbin/postdrop"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o555|os.ModeSetgid || !st.ModTime().Equal(mtime) {
		t.Errorf("postdrop: mode %v, time %v; want %v, %v", st.Mode(), st.ModTime(), 0o555|os.ModeSetgid, mtime)
	}
}

func TestEscapes(t *testing.T) {
	for _, e := range []ent{
		{h: tar.Header{Typeflag: tar.TypeReg, Name: "../etc/passwd", Mode: 0o644}},
		{h: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/passwd", Mode: 0o644}},
		{h: tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "../../etc/shadow"}},
	} {
		dir := t.TempDir()
		if _, err := Extract(context.Background(), stream(t, e), dir, Options{}); err == nil || !strings.Contains(err.Error(), "escapes the root") {
			t.Errorf("Extract(%s -> %s) = %v, want an escape error", e.h.Name, e.h.Linkname, err)
		}
	}
}
