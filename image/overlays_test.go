package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"

	"tandem/image/disk"
	"tandem/image/recipe"
	"tandem/internal/testenv"
)

// overlaySource writes a recipe with two overlays below dir, each file
// with its mode (past the umask).
func overlaySource(t *testing.T, dir string) string {
	t.Helper()
	for _, f := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"overlays/a/rootfs/etc/motd", "a\n", 0o644},
		{"overlays/a/rootfs/etc/site/key", "key", 0o600},
		{"overlays/a/rootfs/bin/sh", "#!/bbin/gosh\n", 0o755},
		{"overlays/a/mail/etc/postfix/header_checks", "# a\n", 0o600},
		{"overlays/a/mail/etc/dovecot/sieve/default.sieve", "keep;\n", 0o644},
		{"overlays/b/rootfs/etc/motd", "b\n", 0o640},
		{"overlays/b/rootfs/usr/local/bin/tool", "tool", 0o750},
		{"overlays/b/mail/etc/postfix/header_checks", "# b\n", 0o644},
		{"recipes/ovl.yaml", "name: ovl\nrole: data\nhardware: kvm-guest\noutputs: [raw]\noverlays: [../overlays/a, ../overlays/b]\n", 0o644},
	} {
		p := filepath.Join(dir, f.path)
		testenv.WriteFile(t, p, []byte(f.data), f.mode)
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "recipes/ovl.yaml")
}

// TestBuildOverlays builds a recipe with two overlays and reads the
// initramfs and the mail template back from slot A of the raw disk: the
// overlays' files are there with their modes, root's, a later overlay
// winning over an earlier one and every overlay over what the builder
// generates (bin/sh, a symbolic link it adds last). A second build from a
// copy elsewhere, with other file times, gives the same bytes.
func TestBuildOverlays(t *testing.T) {
	testenv.RequireTool(t, "grub-mkimage", "mke2fs")
	hw, err := filepath.Abs("../hardware")
	if err != nil {
		t.Fatal(err)
	}
	var ms [2]*Manifest
	var raw string
	for i := range ms {
		src := overlaySource(t, t.TempDir())
		if i == 1 {
			old := time.Unix(1e9, 0)
			for _, p := range []string{"overlays/a/rootfs/etc/motd", "overlays/b/mail/etc/postfix/header_checks", "overlays/b/rootfs"} {
				if err := os.Chtimes(filepath.Join(filepath.Dir(src), "..", p), old, old); err != nil {
					t.Fatal(err)
				}
			}
		}
		r, err := recipe.Load(src, hw)
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		if ms[i], err = Build(context.Background(), r, Options{OutDir: out, Epoch: 1700000000, Logf: t.Logf}); err != nil {
			t.Fatal(err)
		}
		raw = filepath.Join(out, "ovl.raw")
	}
	if !reflect.DeepEqual(ms[0].Artifacts, ms[1].Artifacts) || !reflect.DeepEqual(ms[0].Overlays, ms[1].Overlays) {
		t.Errorf("two builds from copies of the same overlays differ:\n%+v\n%+v", ms[0], ms[1])
	}
	if o := ms[0].Overlays; len(o) != 2 || o[0].Path != "../overlays/a" || o[0].Files != 5 || o[1].Path != "../overlays/b" || o[1].Files != 3 || len(o[1].SHA256) != 64 {
		t.Errorf("manifest overlays = %+v, want ../overlays/a (5 files) and ../overlays/b (3) with their digests", o)
	}
	checkInitramfs(t, raw)
	checkTemplate(t, raw)
}

type want struct {
	mode uint64
	data string
}

func checkInitramfs(t *testing.T, raw string) {
	img, err := disk.ReadBootFile(raw, "/slot-A/initramfs.img")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(readerAt(t, zr)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	for _, r := range recs {
		got[r.Name] = r
	}
	for name, w := range map[string]want{
		"etc/motd":           {cpio.S_IFREG | 0o640, "b\n"},
		"etc/site/key":       {cpio.S_IFREG | 0o600, "key"},
		"etc/site":           {cpio.S_IFDIR | 0o755, ""},
		"bin/sh":             {cpio.S_IFREG | 0o755, "#!/bbin/gosh\n"},
		"usr/local/bin/tool": {cpio.S_IFREG | 0o750, "tool"},
	} {
		r, ok := got[name]
		if !ok {
			t.Errorf("initramfs: no %s", name)
			continue
		}
		var data []byte
		if r.ReaderAt != nil {
			data, _ = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		if r.Mode != w.mode || string(data) != w.data || r.UID != 0 || r.GID != 0 {
			t.Errorf("initramfs %s: mode %o uid %d gid %d %q, want mode %o, root's, %q", name, r.Mode, r.UID, r.GID, data, w.mode, w.data)
		}
	}
	if _, ok := got["init"]; !ok {
		t.Error("initramfs: no /init")
	}
}

func checkTemplate(t *testing.T, raw string) {
	tpl, err := disk.ReadBootFile(raw, "/slot-A/mail.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mail template with the overlays: %d bytes", len(tpl))
	zr, err := zstd.NewReader(bytes.NewReader(tpl))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]want{}
	var uids []int
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !strings.HasPrefix(name, "tandem-overlay") {
			continue
		}
		data, _ := io.ReadAll(tr)
		got[name] = want{uint64(h.Mode), string(data)}
		uids = append(uids, h.Uid, h.Gid)
		if h.ModTime.Unix() != 1700000000 {
			t.Errorf("template %s: time %d, want SOURCE_DATE_EPOCH", name, h.ModTime.Unix())
		}
	}
	for name, w := range map[string]want{
		"tandem-overlay": {0o755, ""},
		"tandem-overlay/etc/postfix/header_checks":       {0o644, "# b\n"},
		"tandem-overlay/etc/dovecot/sieve":               {0o755, ""},
		"tandem-overlay/etc/dovecot/sieve/default.sieve": {0o644, "keep;\n"},
	} {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("template %s = %+v (there: %v), want %+v", name, g, ok, w)
		}
	}
	for _, id := range uids {
		if id != 0 {
			t.Errorf("template overlay entries have owners %v, want root's", uids)
			break
		}
	}
}

// readerAt reads r whole (cpio's reader wants an io.ReaderAt).
func readerAt(t *testing.T, r io.Reader) io.ReaderAt {
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
