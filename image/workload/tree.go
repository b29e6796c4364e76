package workload

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem/image/debian"
	"tandem/image/overlay"
	"tandem/internal/mailroot"
	"tandem/internal/tarx"
)

// dropped are package paths of no use in the container: documentation,
// init-system glue (the container's init is services/mail's) and
// rspamd's web interface (its controller worker does not run).
var dropped = []string{"usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/",
	"usr/share/locale/", "usr/share/bug/", "usr/share/apport/", "lib/systemd/", "usr/lib/systemd/",
	"etc/init.d/", "etc/ufw/", "etc/logcheck/", "etc/insserv.conf.d/", "etc/network/", "etc/ppp/", "etc/rsyslog.d/",
	"usr/share/rspamd/www/"}

// tree is the template's file system being assembled: one entry per path.
type tree struct {
	mtime   time.Time
	entries map[string]*entry
}

type entry struct {
	hdr  tar.Header
	data []byte
}

func newTree(epoch int64) *tree {
	return &tree{mtime: time.Unix(epoch, 0).UTC(), entries: map[string]*entry{}}
}

// addDeb adds the data of one .deb: regular files, directories and
// symlinks with their modes; hard links become copies (the archive is
// sorted, so a link could come before its target); owners become root.
func (t *tree) addDeb(debPath string) error {
	return debian.WithData(debPath, func(r io.Reader) error {
		return tarx.Each(r, t.addEntry)
	})
}

func (t *tree) addEntry(name string, h *tar.Header, r io.Reader) error {
	for _, d := range dropped {
		if strings.HasPrefix(name+"/", d) {
			return nil
		}
	}
	mode := h.Mode & 0o7777
	switch h.Typeflag {
	case tar.TypeDir:
		if _, ok := t.entries[name]; !ok {
			t.dir(name, 0, 0, mode)
		}
	case tar.TypeSymlink:
		t.entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: h.Linkname, Mode: 0o777}}
	case tar.TypeLink:
		target := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
		e, ok := t.entries[target]
		if !ok {
			return fmt.Errorf("data.tar: hard link %s to %s, which comes later", name, target)
		}
		t.file(name, e.data, e.hdr.Mode)
	case tar.TypeReg:
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r); err != nil {
			return fmt.Errorf("data.tar: %s: %w", name, err)
		}
		t.file(name, buf.Bytes(), mode)
	}
	return nil
}

func (t *tree) dir(name string, uid, gid int, mode int64) {
	t.entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}}
}

func (t *tree) file(name string, data []byte, mode int64) {
	t.entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

// addBase adds what maintainer scripts would have made: the accounts,
// the Postfix queue and Dovecot's state directory with their owners, the
// set-group-ID Postfix programs, and name service configuration.
func (t *tree) addBase() {
	var passwd, group, shadow strings.Builder
	for _, a := range mailroot.Accounts {
		gid := a.ID
		if a.NoGroup {
			gid = a.GroupID
		} else {
			fmt.Fprintf(&group, "%s:x:%d:\n", a.Name, a.ID)
		}
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:/usr/sbin/nologin\n", a.Name, a.ID, gid, a.Comment, a.Home)
		fmt.Fprintf(&shadow, "%s:*:0:0:99999:7:::\n", a.Name)
	}
	for _, g := range mailroot.Groups {
		fmt.Fprintf(&group, "%s:x:%d:\n", g.Name, g.ID)
	}
	t.file("etc/passwd", []byte(passwd.String()), 0o644)
	t.file("etc/group", []byte(group.String()), 0o644)
	t.file("etc/shadow", []byte(shadow.String()), 0o600)
	t.file("etc/nsswitch.conf", []byte("# tandem mail container\npasswd: files\ngroup: files\nshadow: files\nhosts: files dns\nservices: files\nprotocols: files\n"), 0o644)
	for _, d := range mailroot.Dirs {
		t.dir(d.Path, d.UID, d.GID, d.Mode)
	}
	for _, f := range mailroot.SetgidFiles {
		if e, ok := t.entries[f]; ok {
			e.hdr.Gid, e.hdr.Mode = mailroot.PostdropGID, 0o2555
		}
	}
	t.addCABundle()
}

// caCerts is where ca-certificates puts the certificates its bundle is
// made of.
const caCerts = "usr/share/ca-certificates/"

// addCABundle makes mailroot.CABundle of every certificate below
// caCerts, in the order of their paths, as update-ca-certificates does
// with Debian's default selection (all of them); nothing without them.
func (t *tree) addCABundle() {
	var names []string
	for n, e := range t.entries {
		if strings.HasPrefix(n, caCerts) && strings.HasSuffix(n, ".crt") && e.hdr.Typeflag == tar.TypeReg {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		b.Write(t.entries[n].data)
		if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	t.file(strings.TrimPrefix(mailroot.CABundle, "/"), b.Bytes(), 0o644)
}

// addOverlay adds the mail overlay files below OverlayDir, root's: files
// with their permission bits, directories 0755. Each must fit the
// template at its own path (overlay.Fit), where the workload lays it.
func (t *tree) addOverlay(files []overlay.File) error {
	if len(files) == 0 {
		return nil
	}
	t.addParents() // the template's directories, to fit the files against
	for _, f := range files {
		if err := overlay.Fit(f, t.lookup, "the mail template"); err != nil {
			return err
		}
		name := path.Join(OverlayDir, f.Path)
		if f.Mode.IsDir() {
			t.dir(name, 0, 0, int64(overlay.DirMode.Perm()))
		} else {
			t.file(name, f.Data, int64(f.Mode.Perm()))
		}
	}
	return nil
}

// lookup returns the type of the entry at p.
func (t *tree) lookup(p string) (fs.FileMode, bool) {
	e, ok := t.entries[p]
	if !ok {
		return 0, false
	}
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		return fs.ModeDir, true
	case tar.TypeSymlink:
		return fs.ModeSymlink, true
	}
	return 0, true
}

// write writes the tree as a tar archive sorted by path, parents created
// first, every entry stamped with the tree's time; it returns the bytes of
// file data written.
func (t *tree) write(w io.Writer) (int64, error) {
	t.addParents()
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	var total int64
	for _, n := range names {
		e := t.entries[n]
		e.hdr.ModTime = t.mtime
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return 0, fmt.Errorf("tar %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return 0, fmt.Errorf("tar %s: %w", n, err)
		}
		total += int64(len(e.data))
	}
	return total, tw.Close()
}

// addParents adds a root-owned 0755 directory for every parent that has
// no entry of its own.
func (t *tree) addParents() {
	var missing []string
	for n := range t.entries {
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			if _, ok := t.entries[d]; !ok && !slices.Contains(missing, d) {
				missing = append(missing, d)
			}
		}
	}
	for _, d := range missing {
		t.dir(d, 0, 0, 0o755)
	}
}
