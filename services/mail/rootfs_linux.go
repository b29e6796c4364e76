package mail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	_, err = w.write(site)
	return site, err
}

// write renders the configuration for site and writes what changed; it
// reports whether anything rspamd reads changed.
func (w *Workload) write(site Site) (rspamdChanged bool, err error) {
	secret, err := w.monitorSecret()
	if err != nil {
		return false, err
	}
	salt := []byte(newSecret())[:12]
	if err := w.loadOverlay(); err != nil {
		return false, err
	}
	c := config{Hostname: w.Hostname(), Domain: w.Domain, Domains: site.Domains, Users: site.Users, Aliases: site.Aliases,
		HeaderChecks:    w.overlayHas(headerChecks),
		MonitorPassword: secret, Salt: salt,
		Listen: w.Listen, Settings: site.Settings, TLS: site.TLS,
		Rspamd: w.rspamdPresent(), DKIM: site.DKIM}
	if err := fixDirs(w.rootfs()); err != nil {
		return false, err
	}
	files := c.files()
	rcPath := w.resolvConf
	if rcPath == "" {
		rcPath = "/etc/resolv.conf"
	}
	if rc, err := os.ReadFile(rcPath); err == nil {
		files["etc/resolv.conf"] = rc
	}
	for rel, data := range files {
		changed, err := w.writeFile(rel, data)
		if err != nil {
			return false, err
		}
		rspamdChanged = rspamdChanged || changed && (strings.HasPrefix("/"+rel, "/etc/rspamd/") || dkimFile(rel))
	}
	if c.Rspamd {
		if err := w.pruneDKIM(c.DKIM); err != nil {
			return false, err
		}
	}
	if _, ok := files[smarthostPasswords]; !ok {
		if err := os.Remove(filepath.Join(w.rootfs(), smarthostPasswords)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("mail: %w", err)
		}
	}
	return rspamdChanged, w.layOverlay()
}

// fileMode is the mode and group of the file at rel and of its
// directory: secrets root's only, the DKIM keys root's and rspamd's group
// (its workers sign as _rspamd), the passdb Dovecot's group.
func fileMode(rel string) (mode os.FileMode, gid int, dirMode os.FileMode, dirGID int) {
	switch {
	case rel == "etc/dovecot/users":
		return 0o640, mailroot.DovecotID, 0o755, 0
	case secretFile(rel):
		return 0o600, 0, 0o700, 0
	case dkimFile(rel):
		return 0o640, mailroot.RspamdID, 0o750, mailroot.RspamdID
	}
	return 0o644, 0, 0o755, 0
}

// writeFile writes data at rel below the root, atomically, with its mode
// and group, unless the file holds data already (the passdb is always
// written); its directory gets its mode and group in any case. It
// reports whether it wrote.
func (w *Workload) writeFile(rel string, data []byte) (bool, error) {
	mode, gid, dirMode, dirGID := fileMode(rel)
	p := filepath.Join(w.rootfs(), rel)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	if err := os.Lchown(dir, 0, dirGID); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) && rel != "etc/dovecot/users" {
		return false, nil
	}
	if err := atomicfile.Write(p, data, mode); err != nil {
		return false, fmt.Errorf("mail: write %s: %w", p, err)
	}
	if err := os.Lchown(p, 0, gid); err != nil {
		return false, fmt.Errorf("mail: %w", err)
	}
	return true, nil
}

// pruneDKIM removes the keys of domains no longer served.
func (w *Workload) pruneDKIM(keys []DKIMKey) error {
	keep := map[string]bool{}
	for _, k := range keys {
		keep[filepath.Base(k.path())] = true
	}
	dir := filepath.Join(w.rootfs(), dkimDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mail: %w", err)
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("mail: %w", err)
			}
		}
	}
	return nil
}

// rspamdPresent reports whether the root has rspamd: a root unpacked
// from a template made before rspamd came into it does not (it is never
// unpacked again), and then runs without DKIM signing or spam filtering.
func (w *Workload) rspamdPresent() bool {
	_, err := os.Stat(filepath.Join(w.rootfs(), rspamdBinary))
	return err == nil
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
