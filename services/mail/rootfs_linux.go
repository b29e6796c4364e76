package mail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"tandem/internal/atomicfile"
	"tandem/internal/mailroot"
	"tandem/internal/tarx"
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
	return tarx.Extract(ctx, zr, dir, tarx.Options{Owners: true})
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
		if err := os.Chmod(p, tarx.Mode(d.Mode)); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
	}
	return nil
}

// configure writes the configuration for this node's domain, users and
// site into the container root, each file atomically, and returns the
// site it applied.
func (w *Workload) configure(ctx context.Context) (Site, error) {
	if w.Site == nil {
		return Site{}, errors.New("mail: no site settings (the cluster daemon gives the TLS certificate)")
	}
	site, err := w.Site(ctx)
	if err != nil {
		return Site{}, fmt.Errorf("mail: site settings: %w", err)
	}
	return site, w.write(site)
}

// write renders the configuration for site and writes what changed.
func (w *Workload) write(site Site) error {
	secret, err := w.monitorSecret()
	if err != nil {
		return err
	}
	salt := []byte(newSecret())[:12]
	if err := w.loadOverlay(); err != nil {
		return err
	}
	c := config{Hostname: w.Hostname(), Domain: w.Domain, Domains: site.Domains, Users: site.Users, Aliases: site.Aliases,
		HeaderChecks:    w.overlayHas(headerChecks),
		MonitorPassword: secret, Salt: salt,
		Listen: w.Listen, Settings: site.Settings, TLS: site.TLS}
	if err := fixDirs(w.rootfs()); err != nil {
		return err
	}
	files := c.files()
	if rc, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		files["etc/resolv.conf"] = rc
	}
	for rel, data := range files {
		mode, dirMode := os.FileMode(0o644), os.FileMode(0o755)
		switch {
		case rel == "etc/dovecot/users":
			mode = 0o640
		case secretFile(rel):
			mode, dirMode = 0o600, 0o700
		}
		p := filepath.Join(w.rootfs(), rel)
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		if err := os.Chmod(filepath.Dir(p), dirMode); err != nil {
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
	if err := os.Chown(filepath.Join(w.rootfs(), "etc/dovecot/users"), 0, mailroot.DovecotID); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	return w.layOverlay()
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
