package mail

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"tandem/internal/atomicfile"
	"tandem/internal/mailroot"
)

// rootfs is the container's root file system inside the workload root.
func (w *Workload) rootfs() string { return filepath.Join(w.Root, "rootfs") }

// ensureRootfs unpacks the template into Root/rootfs unless it exists: into
// a temporary directory first, synced, then renamed, so a crash midway
// leaves no half root that a later start would take for a whole one. It
// reports whether it unpacked.
func (w *Workload) ensureRootfs(ctx context.Context) (bool, error) {
	if _, err := os.Stat(w.rootfs()); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("mail: %w", err)
	}
	tpl, err := w.templatePath()
	if err != nil {
		return false, err
	}
	start := time.Now()
	w.logf("unpacking template %s into %s", tpl, w.rootfs())
	tmp := filepath.Join(w.Root, ".rootfs-unpacking")
	if err := os.RemoveAll(tmp); err != nil {
		return false, fmt.Errorf("mail: remove %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	n, err := unpackTemplate(ctx, tpl, tmp)
	if err != nil {
		return false, fmt.Errorf("mail: unpack template %s: %w", tpl, err)
	}
	if err := syncDir(w.Root); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, w.rootfs()); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	if err := syncDir(w.Root); err != nil {
		return false, err
	}
	w.logf("unpacked %d entries in %s", n, time.Since(start).Round(time.Millisecond))
	return true, nil
}

// syncDir flushes the whole file system holding dir (syncfs).
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("mail: syncfs %s: %w", dir, err)
	}
	return nil
}

// unpackTemplate extracts a zstd-compressed tar into dir with the owners,
// modes and times of its headers; it streams, holding no more than one
// file in memory.
func unpackTemplate(ctx context.Context, path, dir string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	n := 0
	for ; ; n++ {
		if n%256 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if err := extract(dir, h, tr); err != nil {
			return n, err
		}
	}
}

func extract(dir string, h *tar.Header, r io.Reader) error {
	rel := filepath.Clean(h.Name)
	if rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return fmt.Errorf("entry %q escapes the root", h.Name)
	}
	p := filepath.Join(dir, rel)
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(h.Linkname, p); err != nil {
			return err
		}
		return os.Lchown(p, h.Uid, h.Gid)
	case tar.TypeReg:
		out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("entry %q: unsupported type %c", h.Name, h.Typeflag)
	}
	// chown before chmod: chown clears set-group-ID.
	if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
		return err
	}
	if err := os.Chmod(p, mode|specialBits(h.Mode)); err != nil {
		return err
	}
	return os.Chtimes(p, h.ModTime, h.ModTime)
}

func specialBits(m int64) os.FileMode {
	var out os.FileMode
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

// fixDirs creates the directories Postfix and Dovecot need and resets
// their owners and modes (a no-op on a root the template just made).
func fixDirs(rootfs string) error {
	for _, d := range mailroot.Dirs {
		p := filepath.Join(rootfs, d.Path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		if d.OnlyCreate {
			continue
		}
		if err := os.Lchown(p, d.UID, d.GID); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		if err := os.Chmod(p, os.FileMode(d.Mode).Perm()|specialBits(d.Mode)); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
	}
	return nil
}

// configure writes the configuration for this node's domain and users
// into the container root, each file atomically.
func (w *Workload) configure() error {
	uf, err := os.Open(w.Users)
	if err != nil {
		return fmt.Errorf("mail: param %s: %w", ParamUsers, err)
	}
	users, err := parseUsers(uf, w.Users, w.Domain)
	uf.Close()
	if err != nil {
		return fmt.Errorf("mail: param %s: %w", ParamUsers, err)
	}
	secret, err := w.monitorSecret()
	if err != nil {
		return err
	}
	salt := []byte(newSecret())[:12]
	c := config{Hostname: w.Hostname(), Domain: w.Domain, Users: users, MonitorPassword: secret, Salt: salt}
	if err := fixDirs(w.rootfs()); err != nil {
		return err
	}
	files := c.files()
	if rc, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		files["etc/resolv.conf"] = rc
	}
	for rel, data := range files {
		mode := os.FileMode(0o644)
		if rel == "etc/dovecot/users" {
			mode = 0o640
		}
		p := filepath.Join(w.rootfs(), rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) && rel != "etc/dovecot/users" {
			continue
		}
		if err := atomicfile.Write(p, data, mode); err != nil {
			return fmt.Errorf("mail: write %s: %w", p, err)
		}
	}
	// Dovecot's auth process reads the passdb as the dovecot user.
	return os.Chown(filepath.Join(w.rootfs(), "etc/dovecot/users"), 0, mailroot.DovecotID)
}

// monitorSecret returns the monitor account's password, created on first
// use and kept in the workload root (0600), outside the container.
func (w *Workload) monitorSecret() (string, error) {
	p := filepath.Join(w.Root, "monitor.secret")
	if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) >= 16 {
		return string(bytes.TrimSpace(b)), nil
	}
	s := newSecret()
	if err := atomicfile.Write(p, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("mail: %w", err)
	}
	return s, nil
}
