// Package initramfs assembles a node's initramfs: tandem's Go programs and
// u-root's core commands built by u-root's mkuimage, plus files taken from
// unpacked Debian packages (kernel modules, drbd-utils and the shared
// libraries its programs need), with the recipe's overlays laid over all
// of it. The archive is reproducible: records are sorted and carry no
// times or owners.
package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"

	"tandem/image/overlay"
)

// Tree is the set of non-Go files going into the archive, by archive path.
type Tree struct {
	recs map[string]cpio.Record
}

// NewTree returns a tree with the directories and device nodes every node
// needs before devtmpfs is mounted.
func NewTree() *Tree {
	t := &Tree{recs: map[string]cpio.Record{}}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc", "perm", "boot", "var/log"} {
		t.AddDir(d)
	}
	t.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	t.add(cpio.CharDev("dev/null", 0o666, 1, 3))
	return t
}

func (t *Tree) add(r cpio.Record) {
	r.Name = strings.TrimPrefix(path.Clean("/"+r.Name), "/")
	if dir := path.Dir(r.Name); dir != "." {
		t.AddDir(dir)
	}
	t.recs[r.Name] = r
}

// AddDir adds a directory and its parents.
func (t *Tree) AddDir(p string) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" || p == "." {
		return
	}
	if _, ok := t.recs[p]; ok {
		return
	}
	t.add(cpio.Directory(p, 0o755))
}

// AddData adds a regular file with the given content.
func (t *Tree) AddData(p string, data []byte, perm os.FileMode) {
	t.add(cpio.StaticRecord(data, cpio.Info{Name: p, Mode: cpio.S_IFREG | uint64(perm.Perm())}))
}

// AddHost adds the file, directory or symlink at host path src as p.
func (t *Tree) AddHost(p, src string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		t.add(cpio.Symlink(p, target))
	case st.IsDir():
		t.AddDir(p)
	case st.Mode().IsRegular():
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		t.AddData(p, data, st.Mode())
	default:
		return fmt.Errorf("%s: unsupported file type %s", src, st.Mode().Type())
	}
	return nil
}

// addArchive adds the records of the cpio archive at path: files,
// directories and symlinks.
func (t *Tree) addArchive(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, r := range recs {
		if r.Name == "." || r.Name == "" || r.Name == cpio.Trailer {
			continue
		}
		var data []byte
		if r.ReaderAt != nil {
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, r.Name, err)
		}
		r.ReaderAt = bytes.NewReader(data)
		t.add(r)
	}
	return nil
}

// Lay lays overlay files over the tree in order (overlay.Merge's
// result): each file replaces a file or symbolic link at its path, with
// its content and permission bits, and each directory is added 0755 if
// it is not there; anything else (a file where the tree has a directory
// or a device, a directory where it has a file, something below a file)
// is an error naming the file's origin (overlay.Fit).
func (t *Tree) Lay(files []overlay.File) error {
	for _, f := range files {
		f.Path = strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if err := overlay.Fit(f, t.lookup, "the image"); err != nil {
			return err
		}
		if f.Mode.IsDir() {
			t.AddDir(f.Path)
		} else {
			t.AddData(f.Path, f.Data, f.Mode)
		}
	}
	return nil
}

// lookup returns the type of the record at p.
func (t *Tree) lookup(p string) (os.FileMode, bool) {
	r, ok := t.recs[p]
	if !ok {
		return 0, false
	}
	switch r.Mode & cpio.S_IFMT {
	case cpio.S_IFDIR:
		return os.ModeDir, true
	case cpio.S_IFREG:
		return 0, true
	case cpio.S_IFLNK:
		return os.ModeSymlink, true
	case cpio.S_IFIFO:
		return os.ModeNamedPipe, true
	case cpio.S_IFSOCK:
		return os.ModeSocket, true
	}
	return os.ModeDevice, true
}

// Has reports whether p is in the tree.
func (t *Tree) Has(p string) bool {
	_, ok := t.recs[strings.TrimPrefix(path.Clean("/"+p), "/")]
	return ok
}

// Archive returns the tree as a cpio archive, records sorted by name.
func (t *Tree) Archive() (*cpio.Archive, error) {
	names := make([]string, 0, len(t.recs))
	for n := range t.recs {
		names = append(names, n)
	}
	sort.Strings(names)
	recs := make([]cpio.Record, len(names))
	for i, n := range names {
		recs[i] = t.recs[n]
	}
	return cpio.ArchiveFromRecords(recs)
}

// WriteCPIO writes the tree as a newc cpio archive, records sorted and
// stripped of times and owners.
func (t *Tree) WriteCPIO(w io.Writer) error {
	a, err := t.Archive()
	if err != nil {
		return err
	}
	cw := cpio.Newc.Writer(w)
	r := a.Reader()
	for {
		rec, err := r.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := cw.WriteRecord(cpio.MakeReproducible(rec)); err != nil {
			return err
		}
	}
	return cpio.WriteTrailer(cw)
}

// Walk calls fn for every file and symlink below root, with its path
// relative to root (slash-separated), in lexical order.
func Walk(root string, fn func(rel, abs string) error) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		return fn(filepath.ToSlash(rel), p)
	})
}
