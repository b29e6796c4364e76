package initramfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/u-root/mkuimage/cpio"

	"tandem/image/overlay"
)

// generated is a tree as the builder leaves it before the overlays.
func generated() *Tree {
	t := NewTree()
	t.AddData("etc/hostname", []byte("generated\n"), 0o644)
	t.AddData("bin/tandem-network", []byte("elf"), 0o755)
	t.add(cpio.Symlink("bin/sh", "../bbin/gosh"))
	return t
}

func dir(p string) overlay.File {
	return overlay.File{Path: p, Mode: overlay.DirMode, Origin: "o: rootfs/" + p}
}

func file(p string, mode fs.FileMode, data string) overlay.File {
	return overlay.File{Path: p, Mode: mode, Data: []byte(data), Origin: "o: rootfs/" + p}
}

// records reads back the archive WriteCPIO writes.
func records(t *testing.T, tr *Tree) ([]byte, map[string]cpio.Record) {
	t.Helper()
	var b bytes.Buffer
	if err := tr.WriteCPIO(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return b.Bytes(), out
}

// Lay puts the overlay over the generated files: a generated file and a
// symbolic link replaced, new directories 0755, modes kept, root's, no
// times, the same bytes twice.
func TestLay(t *testing.T) {
	files := []overlay.File{
		dir("bin"), file("bin/sh", 0o755, "#!/bbin/gosh\n"),
		dir("etc"), file("etc/hostname", 0o600, "overlay\n"),
		dir("usr"), dir("usr/local"), dir("usr/local/bin"), file("usr/local/bin/tool", 0o750, "tool"),
	}
	var archives [2][]byte
	var recs map[string]cpio.Record
	for i := range archives {
		tr := generated()
		if err := tr.Lay(files); err != nil {
			t.Fatal(err)
		}
		archives[i], recs = records(t, tr)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("two archives of the same tree and overlay differ")
	}
	for _, c := range []struct {
		name string
		mode uint64
		data string
	}{
		{"bin/sh", cpio.S_IFREG | 0o755, "#!/bbin/gosh\n"},
		{"etc/hostname", cpio.S_IFREG | 0o600, "overlay\n"},
		{"usr/local/bin/tool", cpio.S_IFREG | 0o750, "tool"},
		{"usr/local", cpio.S_IFDIR | 0o755, ""},
		{"bin/tandem-network", cpio.S_IFREG | 0o755, "elf"},
		{"dev/console", cpio.S_IFCHR | 0o600, ""},
	} {
		r, ok := recs[c.name]
		if !ok {
			t.Errorf("no %s in the archive", c.name)
			continue
		}
		var data []byte
		if r.ReaderAt != nil {
			data, _ = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		if r.Mode != c.mode || string(data) != c.data || r.UID != 0 || r.GID != 0 || r.MTime != 0 {
			t.Errorf("%s: mode %o uid %d gid %d mtime %d data %q, want mode %o, root's, no time, %q", c.name, r.Mode, r.UID, r.GID, r.MTime, data, c.mode, c.data)
		}
	}
}

func TestLayErrors(t *testing.T) {
	for _, c := range []struct {
		f    overlay.File
		want string
	}{
		{file("etc", 0o644, "x"), "o: rootfs/etc: a file where the image has a directory"},
		{dir("etc/hostname"), "o: rootfs/etc/hostname: a directory where the image has a file"},
		{dir("bin/sh"), "o: rootfs/bin/sh: a directory where the image has a symbolic link"},
		{file("dev/console", 0o644, "x"), "o: rootfs/dev/console: a file where the image has a device"},
		{file("etc/hostname/x", 0o644, "x"), "o: rootfs/etc/hostname/x: below /etc/hostname, which the image has as a file"},
	} {
		err := generated().Lay([]overlay.File{c.f})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, overlay.ErrInvalid) {
			t.Errorf("Lay(%s) = %v, want an overlay.ErrInvalid starting %q", c.f.Path, err, c.want)
		}
	}
}
