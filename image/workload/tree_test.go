package workload

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	"tandem/image/overlay"
)

func sampleTree() *tree {
	t := newTree(1700000000)
	add := func(h tar.Header, data string) {
		h.Size = int64(len(data))
		if err := t.addEntry(path.Clean(strings.TrimPrefix(h.Name, "./")), &h, strings.NewReader(data)); err != nil {
			panic(err)
		}
	}
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/sbin/postdrop", Mode: 0o755, Uid: 7}, "elf")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/share/doc/postfix/README", Mode: 0o644}, "doc")
	add(tar.Header{Typeflag: tar.TypeLink, Name: "./usr/sbin/postdrop2", Linkname: "./usr/sbin/postdrop"}, "")
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "./lib64/ld.so", Linkname: "/lib/x86_64-linux-gnu/ld.so"}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/share/ca-certificates/mozilla/B.crt", Mode: 0o644}, "B\n")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/share/ca-certificates/mozilla/A.crt", Mode: 0o644}, "A")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/share/rspamd/www/index.html", Mode: 0o644}, "ui")
	t.addBase()
	return t
}

// TestTree checks what the template's tar holds: sorted entries with
// parents first, owners from internal/mailroot, set-group-ID postdrop,
// hard links as copies, documentation dropped, and the same bytes twice.
func TestTree(t *testing.T) {
	var a, b bytes.Buffer
	if _, err := sampleTree().write(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := sampleTree().write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of the same tree differ")
	}
	hdrs := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		hdrs[name], order = h, append(order, name)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("entries not sorted: %s before %s", order[i-1], order[i])
		}
	}
	for _, c := range []struct {
		name     string
		uid, gid int
		mode     int64
		typ      byte
	}{
		{"usr/sbin/postdrop", 0, 103, 0o2555, tar.TypeReg},
		{"usr/sbin/postdrop2", 0, 0, 0o755, tar.TypeReg},
		{"usr", 0, 0, 0o755, tar.TypeDir},
		{"var/spool/postfix/public", 100, 103, 0o2710, tar.TypeDir},
		{"var/spool/postfix/maildrop", 100, 103, 0o1730, tar.TypeDir},
		{"var/vmail", 5000, 5000, 0o700, tar.TypeDir},
		{"etc/passwd", 0, 0, 0o644, tar.TypeReg},
		{"lib64/ld.so", 0, 0, 0o777, tar.TypeSymlink},
	} {
		h := hdrs[c.name]
		if h == nil {
			t.Errorf("no %s in the template", c.name)
			continue
		}
		if h.Uid != c.uid || h.Gid != c.gid || h.Mode != c.mode || h.Typeflag != c.typ || h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: uid %d gid %d mode %o type %c time %d, want %d %d %o %c 1700000000", c.name, h.Uid, h.Gid, h.Mode, h.Typeflag, h.ModTime.Unix(), c.uid, c.gid, c.mode, c.typ)
		}
	}
	if _, ok := hdrs["usr/share/doc/postfix/README"]; ok {
		t.Error("documentation was not dropped")
	}
	if _, ok := hdrs["usr/share/rspamd/www/index.html"]; ok {
		t.Error("rspamd's web interface was not dropped")
	}
	if h := hdrs["etc/ssl/certs/ca-certificates.crt"]; h == nil || h.Mode != 0o644 || h.Size != 4 {
		t.Errorf("CA bundle = %+v; want A then B, 0644", h)
	}
}

// The CA bundle holds every certificate of ca-certificates in the order
// of their paths, each ending a line.
func TestTreeCABundle(t *testing.T) {
	e := sampleTree().entries["etc/ssl/certs/ca-certificates.crt"]
	if e == nil || string(e.data) != "A\nB\n" {
		t.Errorf("CA bundle = %+v; want \"A\\nB\\n\"", e)
	}
}

// The mail overlay goes below OverlayDir with the modes of its files,
// root's, directories 0755, stamped and sorted like the rest, the same
// bytes twice; the template's own files are left as they are.
func TestTreeOverlay(t *testing.T) {
	files := []overlay.File{
		{Path: "etc", Mode: overlay.DirMode},
		{Path: "etc/passwd", Mode: 0o600, Data: []byte("site\n")},
		{Path: "etc/postfix", Mode: overlay.DirMode},
		{Path: "etc/postfix/header_checks", Mode: 0o640, Data: []byte("# site\n")},
	}
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		tr := sampleTree()
		if err := tr.addOverlay(files); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of the same tree and overlay differ")
	}
	hdrs, data := map[string]*tar.Header{}, map[string]string{}
	var order []string
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		body, _ := io.ReadAll(tr)
		hdrs[name], data[name], order = h, string(body), append(order, name)
	}
	if !slices.IsSorted(order) {
		t.Errorf("entries not sorted: %q", order)
	}
	for _, c := range []struct {
		name string
		mode int64
		typ  byte
		data string
	}{
		{"tandem-overlay", 0o755, tar.TypeDir, ""},
		{"tandem-overlay/etc/postfix", 0o755, tar.TypeDir, ""},
		{"tandem-overlay/etc/postfix/header_checks", 0o640, tar.TypeReg, "# site\n"},
		{"tandem-overlay/etc/passwd", 0o600, tar.TypeReg, "site\n"},
		{"etc/passwd", 0o644, tar.TypeReg, data["etc/passwd"]},
	} {
		h := hdrs[c.name]
		if h == nil {
			t.Errorf("no %s in the template", c.name)
			continue
		}
		if h.Mode != c.mode || h.Typeflag != c.typ || h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 1700000000 || data[c.name] != c.data {
			t.Errorf("%s: mode %o type %c uid %d gid %d time %d data %q, want %o %c root's 1700000000 %q", c.name, h.Mode, h.Typeflag, h.Uid, h.Gid, h.ModTime.Unix(), data[c.name], c.mode, c.typ, c.data)
		}
	}
	if strings.Contains(data["etc/passwd"], "site") {
		t.Error("the overlay changed the template's own etc/passwd")
	}
}

// A mail overlay file must fit the template where the workload lays it.
func TestTreeOverlayErrors(t *testing.T) {
	for _, c := range []struct {
		f    overlay.File
		want string
	}{
		{overlay.File{Path: "usr", Mode: 0o644, Origin: "o: mail/usr"}, "o: mail/usr: a file where the mail template has a directory"},
		{overlay.File{Path: "etc/passwd", Mode: overlay.DirMode, Origin: "o: mail/etc/passwd"}, "o: mail/etc/passwd: a directory where the mail template has a file"},
		{overlay.File{Path: "lib64/ld.so/x", Mode: 0o644, Origin: "o: mail/lib64/ld.so/x"}, "o: mail/lib64/ld.so/x: below /lib64/ld.so, which the mail template has as a symbolic link"},
	} {
		err := sampleTree().addOverlay([]overlay.File{c.f})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, overlay.ErrInvalid) {
			t.Errorf("addOverlay(%s) = %v, want an overlay.ErrInvalid starting %q", c.f.Path, err, c.want)
		}
	}
}
