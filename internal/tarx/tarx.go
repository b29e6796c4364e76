// Package tarx is tandem's one tar reader: it walks a tar stream with every
// entry's name cleaned and checked to stay below the root, and extracts it
// into a directory, either as an unprivileged copy (a Debian package in the
// builder's cache) or with the owners, modes and times of its headers (the
// mail root unpacked on a node).
package tarx

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Each calls fn for every entry of the tar stream r, with its name relative
// to the root ("./" and trailing slashes dropped; the root itself
// skipped). An entry whose name escapes the root is an error.
func Each(r io.Reader, fn func(name string, h *tar.Header, body io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "/" {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("tar: entry %q escapes the root", h.Name)
		}
		if err := fn(name, h, tr); err != nil {
			return err
		}
	}
}

// Options say how Extract writes entries.
type Options struct {
	// Owners keeps each entry's owner, exact mode (set-ID and sticky bits
	// included) and modification time; it needs root, and refuses entry
	// types other than directories, regular files, symlinks and hard
	// links. Without it, files belong to the caller and stay writable by
	// it (mode | 0o200), directories are 0o755, times are now, and other
	// types are skipped.
	Owners bool
}

// Extract writes the entries of the tar stream r below dir, streaming (one
// file's data at a time), and returns how many it read. ctx is checked
// every 256 entries.
func Extract(ctx context.Context, r io.Reader, dir string, o Options) (int, error) {
	n := 0
	err := Each(r, func(name string, h *tar.Header, body io.Reader) error {
		if n++; n%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		return o.write(dir, name, h, body)
	})
	return n, err
}

func (o Options) write(dir, name string, h *tar.Header, body io.Reader) error {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if !o.Owners {
			return nil
		}
	case tar.TypeSymlink:
		if err := os.Symlink(h.Linkname, p); err != nil {
			return err
		}
		if o.Owners {
			return os.Lchown(p, h.Uid, h.Gid)
		}
		return nil
	case tar.TypeLink:
		target := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
		if target == ".." || strings.HasPrefix(target, "../") || path.IsAbs(target) {
			return fmt.Errorf("tar: hard link %q to %q escapes the root", name, h.Linkname)
		}
		return os.Link(filepath.Join(dir, filepath.FromSlash(target)), p)
	case tar.TypeReg:
		if err := writeFile(p, body, os.FileMode(h.Mode).Perm()|0o200); err != nil {
			return fmt.Errorf("tar: %s: %w", name, err)
		}
		if !o.Owners {
			return nil
		}
	default:
		if !o.Owners {
			return nil
		}
		return fmt.Errorf("tar: entry %q: unsupported type %c", h.Name, h.Typeflag)
	}
	// chown before chmod: chown clears set-group-ID.
	if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
		return err
	}
	if err := os.Chmod(p, Mode(h.Mode)); err != nil {
		return err
	}
	return os.Chtimes(p, h.ModTime, h.ModTime)
}

// writeFile creates p (it must not exist) with body.
func writeFile(p string, body io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Mode is a tar header's mode (Unix permission, set-ID and sticky bits) as
// an os.FileMode.
func Mode(m int64) os.FileMode {
	out := os.FileMode(m).Perm()
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}
