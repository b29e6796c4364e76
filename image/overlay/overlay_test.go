package overlay

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/testenv"
)

// write makes the files of an overlay below dir: path to mode and content.
func write(t *testing.T, dir string, files map[string]string, modes map[string]fs.FileMode) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			testenv.MkdirAll(t, full)
			continue
		}
		m := modes[p]
		if m == 0 {
			m = 0o644
		}
		testenv.WriteFile(t, full, []byte(data), m)
		if err := os.Chmod(full, m); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}

func sample(t *testing.T, dir string) {
	write(t, dir, map[string]string{
		"rootfs/etc/motd":                "hello\n",
		"rootfs/etc/site/key":            "secret",
		"rootfs/usr/local/bin/tool":      "#!/bin/sh\n",
		"rootfs/var/empty/":              "",
		"mail/etc/postfix/header_checks": "# none\n",
	}, map[string]fs.FileMode{"rootfs/etc/site/key": 0o600, "rootfs/usr/local/bin/tool": 0o755, "mail/etc/postfix/header_checks": 0o640})
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	sample(t, dir)
	tr, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tr.Entries {
		got = append(got, e.Path+" "+e.Mode.String())
	}
	want := []string{
		"mail d---------", "mail/etc d---------", "mail/etc/postfix d---------", "mail/etc/postfix/header_checks -rw-r-----",
		"rootfs d---------", "rootfs/etc d---------", "rootfs/etc/motd -rw-r--r--", "rootfs/etc/site d---------",
		"rootfs/etc/site/key -rw-------", "rootfs/usr d---------", "rootfs/usr/local d---------", "rootfs/usr/local/bin d---------",
		"rootfs/usr/local/bin/tool -rwxr-xr-x", "rootfs/var d---------", "rootfs/var/empty d---------",
	}
	for i := range want {
		want[i] = strings.ReplaceAll(want[i], "d---------", DirMode.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Scan() entries =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := tr.Files(); n != 4 {
		t.Errorf("Files() = %d, want 4", n)
	}
	tr.Name = "r.yaml: overlays[0]: site"
	var part []string
	for _, f := range tr.Part(RootFS) {
		part = append(part, f.Path)
	}
	if want := []string{"etc", "etc/motd", "etc/site", "etc/site/key", "usr", "usr/local", "usr/local/bin", "usr/local/bin/tool", "var", "var/empty"}; !slices.Equal(part, want) {
		t.Errorf("Part(rootfs) = %q, want %q", part, want)
	}
	if f := tr.Part(Mail)[2]; f.Origin != "r.yaml: overlays[0]: site: mail/etc/postfix/header_checks" || string(f.Data) != "# none\n" {
		t.Errorf("Part(mail)[2] = %+v, want header_checks with its origin and content", f)
	}
}

// The digest follows what goes into an image (paths, modes, contents)
// and nothing else: not the directory the overlay is in, its times, or
// its directories' modes.
func TestDigest(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	sample(t, a)
	sample(t, b)
	old := time.Unix(1e9, 0)
	for _, p := range []string{"rootfs/etc/motd", "rootfs/etc", "mail"} {
		if err := os.Chtimes(filepath.Join(b, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(b, "rootfs/usr"), 0o700); err != nil {
		t.Fatal(err)
	}
	digest := func(dir string) string {
		tr, err := Scan(dir)
		if err != nil {
			t.Fatal(err)
		}
		return tr.Digest()
	}
	da := digest(a)
	if db := digest(b); da != db {
		t.Errorf("Digest() of the same overlay at two places, with other times = %s and %s, want them equal", da, db)
	}
	if err := os.Chmod(filepath.Join(b, "rootfs/etc/motd"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db := digest(b); da == db {
		t.Errorf("Digest() did not change with a file's mode")
	}
}

// Setups for TestScanErrors, each changing the sample overlay at dir;
// paths are relative to it.
type setup func(dir string) error

func touch(p string) setup {
	return func(dir string) error { return os.WriteFile(filepath.Join(dir, p), nil, 0o644) }
}
func mkdir(p string) setup {
	return func(dir string) error { return os.Mkdir(filepath.Join(dir, p), 0o755) }
}
func symlink(target, p string) setup {
	return func(dir string) error { return os.Symlink(target, filepath.Join(dir, p)) }
}
func chmod(p string, mode uint32) setup { // raw bits: set-ID and sticky included
	return func(dir string) error { return syscall.Chmod(filepath.Join(dir, p), mode) }
}
func mknod(p string, mode uint32) setup {
	return func(dir string) error { return syscall.Mknod(filepath.Join(dir, p), mode|0o644, 0) }
}
func link(from, p string) setup { // from: absolute, or relative to dir
	return func(dir string) error {
		if !filepath.IsAbs(from) {
			from = filepath.Join(dir, from)
		}
		return os.Link(from, filepath.Join(dir, p))
	}
}
func all(setups ...setup) setup {
	return func(dir string) error {
		for _, s := range setups {
			if err := s(dir); err != nil {
				return err
			}
		}
		return nil
	}
}
func replaced(p string, with setup) setup { // p (or dir itself, for ".") removed first
	return func(dir string) error {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return err
		}
		if with == nil {
			return nil
		}
		return with(dir)
	}
}

func TestScanErrors(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	testenv.WriteFile(t, secret, []byte("host file"), 0o600)
	for _, c := range []struct {
		name  string
		setup setup
		want  string
	}{
		{"missing", replaced(".", nil), "no such directory "},
		{"not a directory", replaced(".", func(dir string) error { return os.WriteFile(dir, nil, 0o644) }), " is not a directory"},
		{"symlink out via ..", symlink("../../../secret", "rootfs/etc/x"),
			`rootfs/etc/x: a symbolic link (to "../../../secret"): an overlay holds only directories and regular files`},
		{"absolute symlink", symlink("/etc/shadow", "rootfs/etc/shadow"), `rootfs/etc/shadow: a symbolic link (to "/etc/shadow")`},
		{"symlink inside", symlink("motd", "rootfs/etc/issue"), `rootfs/etc/issue: a symbolic link (to "motd")`},
		{"directory symlink", symlink("../..", "rootfs/etc/up"), `rootfs/etc/up: a symbolic link (to "../..")`},
		{"rootfs a symlink out", replaced("rootfs", symlink(outside, "rootfs")),
			"rootfs: a symbolic link at the top level: an overlay holds only the directories rootfs/ and mail/ there"},
		{"set-user-ID", chmod("rootfs/etc/motd", 0o4755), "rootfs/etc/motd: set-user-ID (mode 4755): files in an overlay may not be"},
		{"set-group-ID", chmod("mail/etc/postfix/header_checks", 0o2711), "mail/etc/postfix/header_checks: set-group-ID (mode 2711)"},
		{"sticky", chmod("rootfs/etc/motd", 0o1644), "rootfs/etc/motd: sticky (mode 1644)"},
		{"hard link inside", link("rootfs/etc/motd", "rootfs/etc/issue"),
			"rootfs/etc/issue: has 2 hard links: it could be a file from outside the overlay"},
		{"hard link from outside", link(secret, "rootfs/etc/key"), "rootfs/etc/key: has 2 hard links"},
		{"named pipe", mknod("rootfs/etc/fifo", syscall.S_IFIFO), "rootfs/etc/fifo: a named pipe: an overlay holds only directories and regular files"},
		{"socket", mknod("rootfs/etc/sock", syscall.S_IFSOCK), "rootfs/etc/sock: a socket"},
		{"unknown top-level directory", mkdir("etc"), "etc: a directory at the top level: an overlay holds only the directories rootfs/ and mail/ there"},
		{"top-level file", touch("README.md"), "README.md: a file at the top level"},
		{"top-level part as a file", replaced("mail", touch("mail")), "mail: a file at the top level"},
		{"init", touch("rootfs/init"), "rootfs/init: /init is tandem's PID 1: an overlay may not replace it"},
		{"init as a directory", mkdir("rootfs/init"), "rootfs/init: /init is tandem's PID 1"},
		{"bin/init", touch("rootfs/bin/init"), "rootfs/bin/init: /bin/init is tandem's PID 1"},
		{"a tandem command", touch("rootfs/bin/tandem-network"), "rootfs/bin/tandem-network: /bin/tandem-network is a tandem command"},
		{"etc/tandem", mkdir("rootfs/etc/tandem"), "rootfs/etc/tandem: /etc/tandem is what the builder writes for PID 1"},
		{"below a mount", all(mkdir("rootfs/run"), touch("rootfs/run/x")), "rootfs/run/x: below /run, where PID 1 mounts a file system that would hide it"},
		{"newline in a name", touch("rootfs/etc/a\nb"), `"rootfs/etc/a\nb": the name holds a control character`},
		{"not UTF-8", touch("mail/\xff"), `"mail/\xff": the name is not UTF-8`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "site")
			sample(t, dir)
			testenv.MkdirAll(t, filepath.Join(dir, "rootfs/bin"))
			if err := c.setup(dir); err != nil {
				t.Fatal(err)
			}
			tr, err := Scan(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Scan() = %v, %v\nwant an ErrInvalid containing %s", tr, err, c.want)
			}
		})
	}
}

func tree(name string, files ...File) *Tree {
	t := &Tree{Name: name}
	for _, f := range files {
		if f.Mode == 0 {
			f.Mode = DirMode
		}
		t.Entries = append(t.Entries, f)
	}
	return t
}

// Merge: a later overlay's file wins, with its mode; directories merge;
// the other part is left alone; the result is sorted.
func TestMerge(t *testing.T) {
	a := tree("a", File{Path: "rootfs"}, File{Path: "rootfs/etc"}, File{Path: "rootfs/etc/motd", Mode: 0o644, Data: []byte("a")},
		File{Path: "rootfs/etc/a-only", Mode: 0o600, Data: []byte("a")}, File{Path: "mail"}, File{Path: "mail/x", Mode: 0o644})
	b := tree("b", File{Path: "rootfs"}, File{Path: "rootfs/etc"}, File{Path: "rootfs/etc/motd", Mode: 0o640, Data: []byte("b")},
		File{Path: "rootfs/bin"}, File{Path: "rootfs/bin/tool", Mode: 0o755, Data: []byte("b")})
	var got []string
	for _, f := range Merge([]*Tree{a, b}, RootFS) {
		got = append(got, f.Path+" "+f.Mode.String()+" "+string(f.Data)+" "+f.Origin)
	}
	want := []string{
		"bin " + DirMode.String() + "  b: rootfs/bin",
		"bin/tool -rwxr-xr-x b b: rootfs/bin/tool",
		"etc " + DirMode.String() + "  a: rootfs/etc",
		"etc/a-only -rw------- a a: rootfs/etc/a-only",
		"etc/motd -rw-r----- b b: rootfs/etc/motd",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Merge(a, b) =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFit(t *testing.T) {
	have := map[string]fs.FileMode{"etc": fs.ModeDir, "etc/motd": 0, "bin/sh": fs.ModeSymlink, "dev/console": fs.ModeDevice | fs.ModeCharDevice, "lib": fs.ModeSymlink}
	lookup := func(p string) (fs.FileMode, bool) { m, ok := have[p]; return m, ok }
	for _, c := range []struct {
		path string
		mode fs.FileMode
		want string
	}{
		{"etc/motd", 0o644, ""},
		{"etc/new", 0o644, ""},
		{"etc", DirMode, ""},
		{"bin/sh", 0o755, ""},
		{"usr/local/x", 0o644, ""},
		{"etc", 0o644, "o: a file where the image has a directory"},
		{"etc/motd", DirMode, "o: a directory where the image has a file"},
		{"bin/sh", DirMode, "o: a directory where the image has a symbolic link"},
		{"dev/console", 0o644, "o: a file where the image has a device"},
		{"etc/motd/x", 0o644, "o: below /etc/motd, which the image has as a file"},
		{"lib/x/y", 0o644, "o: below /lib, which the image has as a symbolic link"},
	} {
		err := Fit(File{Path: c.path, Mode: c.mode, Origin: "o"}, lookup, "the image")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrInvalid)) {
			t.Errorf("Fit(%s %s) = %v, want %q", c.path, c.mode, err, c.want)
		}
	}
}

func TestReserved(t *testing.T) {
	for p, want := range map[string]bool{
		"init": true, "bin/init": true, "bin/tandem-network": true, "etc/tandem": true, "etc/tandem/node.yaml": true,
		"tmp/x": true, "dev/console": true, "perm/tandem/node.yaml": true, "boot/grub/grub.cfg": true, "proc/x": true, "sys/x": true, "run/x": true,
		"initrd": false, "bin/initx": false, "sbin/init": false, "etc/tandemx": false, "etc/motd": false, "usr/bin/tandem-x": false,
		"tmp": false, "var/tmp/x": false, "devices/x": false, "var/log/x": false,
	} {
		if got := Reserved(p) != ""; got != want {
			t.Errorf("Reserved(%s) = %q, want reserved %v", p, Reserved(p), want)
		}
	}
}
