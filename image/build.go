// Package image turns a recipe into node artifacts: it fetches the kernel,
// GRUB and tools from Debian, assembles the initramfs, and writes the raw
// disk, the qcow2 disk and the PXE files, plus manifest.json listing each
// with its size and sha256. Same inputs and SOURCE_DATE_EPOCH give the same
// bytes.
package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/image/debian"
	"tandem/image/recipe"
)

// Options are the build's settings beyond the recipe.
type Options struct {
	// OutDir receives the artifacts and manifest.json.
	OutDir string
	// CacheDir keeps the package index, .deb files and unpacked trees.
	CacheDir string
	// ModuleDir is the tandem source tree whose Go commands go into the
	// image; empty: found by walking up from the working directory.
	ModuleDir string
	// Epoch is SOURCE_DATE_EPOCH.
	Epoch int64
	// IndexMaxAge is how old the cached package index may be before it is
	// fetched again; 0 means 7 days. Refresh fetches it now.
	IndexMaxAge time.Duration
	Refresh     bool
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// DefaultIndexMaxAge is how old a cached Debian package index may be before
// it is fetched again.
const DefaultIndexMaxAge = 7 * 24 * time.Hour

// DefaultCacheDir is $XDG_CACHE_HOME/tandem or ~/.cache/tandem.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "tandem")
	}
	return filepath.Join(os.TempDir(), "tandem-cache")
}

// FindModuleDir walks up from dir to the tandem source tree's go.mod.
func FindModuleDir(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module tandem\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no tandem source tree (go.mod of module tandem) at or above %s: tandem build runs inside a checkout", dir)
		}
	}
}

func (o *Options) defaults() error {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.IndexMaxAge == 0 {
		o.IndexMaxAge = DefaultIndexMaxAge
	}
	if o.Refresh {
		o.IndexMaxAge = time.Nanosecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.ModuleDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if o.ModuleDir, err = FindModuleDir(wd); err != nil {
			return err
		}
	}
	if o.OutDir == "" {
		return errors.New("no output directory")
	}
	return nil
}

// Build builds every artifact the recipe asks for into o.OutDir. Artifacts
// are made in a staging directory and moved into place only when all are
// done, manifest.json last, so a failed build leaves the previous one whole.
func Build(ctx context.Context, r *recipe.Recipe, o Options) (*Manifest, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	// go-diskfs stamps FAT entries from SOURCE_DATE_EPOCH itself.
	if err := os.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(o.Epoch)); err != nil {
		return nil, err
	}
	start := time.Now()
	b := &builder{r: r, o: o, logf: o.Logf}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(o.OutDir, ".staging-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	b.stage = stage
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"open Debian " + r.Debian.Suite, b.openArchive},
		{"fetch kernel, GRUB and packages", b.fetch},
		{"mail workload template", b.buildTemplate},
		{"collect files", b.collect},
		{"build initramfs", b.buildInitramfs},
		{"write artifacts", b.writeArtifacts},
	}
	for i, s := range steps {
		t := time.Now()
		o.Logf("[%d/%d] %s", i+1, len(steps), s.name)
		if err := s.do(ctx); err != nil {
			return nil, fmt.Errorf("build %s: %s: %w", r.Name, s.name, err)
		}
		o.Logf("[%d/%d] %s: done in %s", i+1, len(steps), s.name, time.Since(t).Round(time.Millisecond))
	}
	m, err := b.publish()
	if err != nil {
		return nil, err
	}
	o.Logf("built %s in %s: %s", r.Name, time.Since(start).Round(time.Millisecond), o.OutDir)
	return m, nil
}

func (b *builder) openArchive(ctx context.Context) error {
	a, err := OpenArchive(ctx, b.r.Debian, b.o.CacheDir, b.o.IndexMaxAge, b.logf)
	b.archive = a
	return err
}

// OpenArchive opens the Debian suite d names, from its mirror or the one
// the machine's apt sources name, with the package cache below cacheDir
// (the builder's, DefaultCacheDir, is also lab/vmtest's for its guests'
// kernel); an index older than maxAge is fetched again.
func OpenArchive(ctx context.Context, d recipe.Debian, cacheDir string, maxAge time.Duration, logf func(string, ...any)) (*debian.Archive, error) {
	uri := d.Mirror
	if uri == "" {
		var err error
		if uri, err = debian.MachineMirror(d.Suite); err != nil {
			return nil, err
		}
	}
	return debian.Open(ctx, debian.Source{URI: uri, Suite: d.Suite, Keyring: d.Keyring},
		filepath.Join(cacheDir, "debian"), maxAge, logf)
}
