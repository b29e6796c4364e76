// Package overlay reads a recipe's overlays: file trees the builder lays
// over what it generates (docs/image.md, "Overlays"). An overlay is a
// directory holding rootfs/ (laid over the node's initramfs root) and
// mail/ (shipped in the mail template for the mail root). Scan reads one
// whole and checks it: only directories and regular files, no set-ID
// bits, no hard links, sane names, nothing outside the tree, nothing at a
// path tandem needs to boot. Merge lays several over each other in order;
// Fit checks a file against the tree it is laid over.
package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// The parts of an overlay: its only top-level entries, both directories.
const (
	// RootFS is laid over the node's initramfs root.
	RootFS = "rootfs"
	// Mail is shipped in the mail template for the mail root.
	Mail = "mail"
)

// DirMode is the mode of every directory an overlay adds; the mode its
// directories have on the build machine is not used.
const DirMode = fs.ModeDir | 0o755

// ErrInvalid is wrapped by every error about what an overlay holds.
var ErrInvalid = errors.New("invalid overlay")

// Tree is one overlay, read whole and checked by Scan.
type Tree struct {
	// Dir is the overlay's directory.
	Dir string
	// Name names the overlay in the errors of Merge's files (Fit); the
	// recipe sets it to its file, the field and the path as written.
	Name string
	// Entries are the overlay's directories and files below its parts,
	// the parts' own directories included, in lexical order, each Path
	// relative to the overlay ("rootfs/etc/motd").
	Entries []File
}

// File is a directory or regular file of an overlay.
type File struct {
	// Path is slash-separated, relative to the overlay in Tree.Entries
	// and relative to its part in what Part and Merge return.
	Path string
	// Mode is DirMode for a directory, else the file's permission bits.
	Mode fs.FileMode
	// Data is a file's content.
	Data []byte
	// Origin names the overlay and the entry, for errors.
	Origin string
}

// Scan reads the overlay at dir (a symbolic link to a directory is
// followed; nothing below it is) and checks every entry.
func Scan(dir string) (*Tree, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no such directory %s: %w", dir, ErrInvalid)
	case err != nil:
		return nil, err
	case !st.IsDir():
		return nil, fmt.Errorf("%s is not a directory: %w", dir, ErrInvalid)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }() // only read through
	t := &Tree{Dir: dir}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		f, err := read(root, p, d)
		if err != nil {
			return err
		}
		t.Entries = append(t.Entries, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// read checks the entry p and returns it, a file with its content.
func read(root *os.Root, p string, d fs.DirEntry) (File, error) {
	if err := checkName(p, d.Name()); err != nil {
		return File{}, err
	}
	if !strings.Contains(p, "/") && (!d.IsDir() || (p != RootFS && p != Mail)) {
		return File{}, invalid(p, "a %s at the top level: an overlay holds only the directories %s/ and %s/ there", Describe(d.Type()), RootFS, Mail)
	}
	if rel, ok := strings.CutPrefix(p, RootFS+"/"); ok {
		if why := Reserved(rel); why != "" {
			return File{}, invalid(p, "%s", why)
		}
	}
	switch t := d.Type(); {
	case t.IsDir():
		return File{Path: p, Mode: DirMode}, nil
	case t&fs.ModeSymlink != 0:
		target, _ := root.Readlink(p)
		return File{}, invalid(p, "a symbolic link (to %q): an overlay holds only directories and regular files; copy the file in", target)
	case !t.IsRegular():
		return File{}, invalid(p, "a %s: an overlay holds only directories and regular files", Describe(t))
	}
	return readFile(root, p)
}

// readFile reads the regular file p, checking the opened file itself: a
// regular file, with no set-ID or sticky bit and no other hard link.
func readFile(root *os.Root, p string) (File, error) {
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	m := st.Mode()
	switch {
	case !m.IsRegular():
		return File{}, invalid(p, "became a %s while it was read", Describe(m.Type()))
	case m&fs.ModeSetuid != 0:
		return File{}, invalid(p, "set-user-ID (mode %s): files in an overlay may not be", mode(m))
	case m&fs.ModeSetgid != 0:
		return File{}, invalid(p, "set-group-ID (mode %s): files in an overlay may not be", mode(m))
	case m&fs.ModeSticky != 0:
		return File{}, invalid(p, "sticky (mode %s): files in an overlay may not be", mode(m))
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink > 1 {
		return File{}, invalid(p, "has %d hard links: it could be a file from outside the overlay; copy it in", sys.Nlink)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return File{}, err
	}
	return File{Path: p, Mode: m.Perm(), Data: data}, nil
}

// checkName refuses a name that is not UTF-8 or holds a control character
// (a newline, say), which would garble logs, listings and errors.
func checkName(p, name string) error {
	if !utf8.ValidString(name) {
		return invalid(strconv.Quote(p), "the name is not UTF-8")
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return invalid(strconv.Quote(p), "the name holds a control character")
	}
	return nil
}

// Reserved says why nothing may be laid at the initramfs path p (relative
// to the root, slash-separated), or "" if something may: tandem needs
// the path to boot, or PID 1 mounts a file system over it (mounted).
func Reserved(p string) string {
	const mine = ": an overlay may not replace it"
	switch {
	case p == "init", p == "bin/init":
		return "/" + p + " is tandem's PID 1" + mine
	case strings.HasPrefix(p, "bin/tandem-"):
		return "/" + p + " is a tandem command" + mine
	case p == "etc/tandem", strings.HasPrefix(p, "etc/tandem/"):
		return "/etc/tandem is what the builder writes for PID 1 (the image description, node configuration and settings)" + mine
	}
	for _, m := range mounted {
		if strings.HasPrefix(p, m+"/") {
			return fmt.Sprintf("below /%s, where PID 1 mounts a file system that would hide it", m)
		}
	}
	return ""
}

// mounted are the initramfs directories PID 1 mounts file systems on
// (init/pid1: the early mounts, the boot and perm partitions).
var mounted = []string{"proc", "sys", "dev", "run", "tmp", "boot", "perm"}

func invalid(p, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", p, fmt.Sprintf(format, args...), ErrInvalid)
}

func mode(m fs.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())|special(m)) }

func special(m fs.FileMode) uint32 {
	var s uint32
	if m&fs.ModeSetuid != 0 {
		s |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		s |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		s |= 0o1000
	}
	return s
}

// Describe names the type of mode m: "directory", "file", "symbolic
// link", ...
func Describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// Files counts the tree's regular files.
func (t *Tree) Files() int {
	n := 0
	for _, e := range t.Entries {
		if !e.Mode.IsDir() {
			n++
		}
	}
	return n
}

// Digest is the sha256 (hex) of a listing of the tree: each directory's
// path, and each file's path, mode and content's sha256, in order. It
// changes with what the overlay puts into an image and with nothing else
// (times, owners, where the tree is).
func (t *Tree) Digest() string {
	h := sha256.New()
	for _, e := range t.Entries {
		if e.Mode.IsDir() {
			fmt.Fprintf(h, "d %s\n", e.Path)
			continue
		}
		fmt.Fprintf(h, "f %04o %s %x\n", uint32(e.Mode.Perm()), e.Path, sha256.Sum256(e.Data))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Part returns the entries below part (RootFS or Mail), their paths
// relative to it (the part's own directory left out), each with its
// Origin: the tree's name and the entry's path in the overlay.
func (t *Tree) Part(part string) []File {
	var out []File
	for _, e := range t.Entries {
		rel, ok := strings.CutPrefix(e.Path, part+"/")
		if !ok {
			continue
		}
		e.Origin = t.Name + ": " + e.Path
		e.Path = rel
		out = append(out, e)
	}
	return out
}

// Merge lays part of each tree over the earlier trees' in order: a later
// file replaces an earlier one at its path, directories merge. The result
// is sorted by path, so a directory comes before what it holds.
// (recipe.Load refuses a file in one overlay where another has a
// directory.)
func Merge(trees []*Tree, part string) []File {
	byPath := map[string]File{}
	for _, t := range trees {
		for _, f := range t.Part(part) {
			if old, ok := byPath[f.Path]; ok && old.Mode.IsDir() && f.Mode.IsDir() {
				continue
			}
			byPath[f.Path] = f
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Fit checks that f can be laid at its path over a tree in which lookup
// finds the type of each existing entry, what naming the tree in the
// error: a file replaces a file or a symbolic link, a directory merges
// with a directory, and every parent that exists is a directory.
func Fit(f File, lookup func(p string) (fs.FileMode, bool), what string) error {
	for d := path.Dir(f.Path); d != "." && d != "/"; d = path.Dir(d) {
		if m, ok := lookup(d); ok && !m.IsDir() {
			return fmt.Errorf("%s: below /%s, which %s has as a %s: %w", f.Origin, d, what, Describe(m), ErrInvalid)
		}
	}
	m, ok := lookup(f.Path)
	switch {
	case !ok, f.Mode.IsDir() && m.IsDir(), !f.Mode.IsDir() && (m.IsRegular() || m&fs.ModeSymlink != 0):
		return nil
	}
	return fmt.Errorf("%s: a %s where %s has a %s: %w", f.Origin, Describe(f.Mode), what, Describe(m), ErrInvalid)
}
