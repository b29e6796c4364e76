package image

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"tandem/image/debian"
	"tandem/image/grub"
	"tandem/image/initramfs"
	"tandem/image/kmod"
	"tandem/image/overlay"
	"tandem/image/recipe"
	"tandem/image/workload"
	"tandem/internal/nodeimage"
)

// builder carries one build's intermediate results from step to step.
type builder struct {
	r       *recipe.Recipe
	o       Options
	logf    func(string, ...any)
	stage   string
	archive *debian.Archive

	kernelRoot string // unpacked linux-image package
	kernelVer  string
	grubDirs   grub.Dirs
	pkgRoots   []string // unpacked recipe packages
	libRoots   []string // unpacked library dependencies
	used       []debian.Package

	template []byte // the mail workload's template, nil for none

	tree      *initramfs.Tree
	kernel    []byte
	initramfs []byte
	artifacts []Artifact
}

// kernelMeta is Debian's metapackage that depends on the current kernel.
const kernelMeta = "linux-image-amd64"

func (b *builder) fetch(ctx context.Context) error {
	meta, err := b.archive.Package(kernelMeta)
	if err != nil {
		return err
	}
	var kpkg string
	for _, d := range meta.Depends {
		if strings.HasPrefix(d, "linux-image-") {
			kpkg = d
		}
	}
	if kpkg == "" {
		return fmt.Errorf("%s %s depends on no linux-image package", kernelMeta, meta.Version)
	}
	if b.kernelRoot, err = b.unpack(ctx, kpkg); err != nil {
		return err
	}
	for _, g := range []struct {
		boot, pkg, dir string
		into           *string
	}{
		{"bios", "grub-pc-bin", "i386-pc", &b.grubDirs.I386PC},
		{"uefi", "grub-efi-amd64-bin", "x86_64-efi", &b.grubDirs.X86_64EFI},
	} {
		if !b.r.Profile.HasBoot(g.boot) || !b.wantsDisk() {
			continue
		}
		root, err := b.unpack(ctx, g.pkg)
		if err != nil {
			return err
		}
		*g.into = filepath.Join(root, "usr/lib/grub", g.dir)
	}
	for _, name := range b.r.Packages {
		root, err := b.unpack(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: packages: %w", b.r.Path, err)
		}
		b.pkgRoots = append(b.pkgRoots, root)
	}
	libs, err := b.libraryPackages()
	if err != nil {
		return err
	}
	for _, name := range libs {
		root, err := b.unpack(ctx, name)
		if err != nil {
			return err
		}
		b.libRoots = append(b.libRoots, root)
	}
	return nil
}

// libraryPackages follows the recipe packages' dependencies through the
// packages that ship shared libraries (lib*): the files the programs need
// are picked from them later by ELF dependencies.
func (b *builder) libraryPackages() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	queue := append([]string(nil), b.r.Packages...)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		p, err := b.archive.Package(name)
		if err != nil {
			continue // virtual or alternative dependency: not a library source
		}
		for _, d := range append(p.PreDepends, p.Depends...) {
			if strings.HasPrefix(d, "lib") && !seen[d] {
				seen[d] = true
				out = append(out, d)
				queue = append(queue, d)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (b *builder) unpack(ctx context.Context, name string) (string, error) {
	p, err := b.archive.Package(name)
	if err != nil {
		return "", err
	}
	deb, err := b.archive.Fetch(ctx, p)
	if err != nil {
		return "", err
	}
	b.used = append(b.used, p)
	return b.archive.Unpacked(p, deb)
}

func (b *builder) wantsDisk() bool {
	return slices.Contains(b.r.Outputs, "raw") || slices.Contains(b.r.Outputs, "qcow2")
}

// skipped are package paths that are of no use on a node.
var skipped = []string{"usr/share/doc/", "usr/share/man/", "usr/share/locale/", "usr/share/info/",
	"usr/share/lintian/", "usr/share/bash-completion/", "lib/systemd/", "usr/lib/systemd/", "etc/init.d/", "usr/share/zsh/"}

func (b *builder) collect(context.Context) error {
	t := initramfs.NewTree()
	if err := b.addKernel(t); err != nil {
		return err
	}
	if err := b.addFirmware(t); err != nil {
		return err
	}
	for _, root := range b.pkgRoots {
		err := initramfs.Walk(root, func(rel, abs string) error {
			for _, s := range skipped {
				if strings.HasPrefix(rel, s) {
					return nil
				}
			}
			return t.AddHost(rel, abs)
		})
		if err != nil {
			return err
		}
	}
	if err := t.Libraries(append(append([]string(nil), b.pkgRoots...), b.libRoots...)); err != nil {
		return fmt.Errorf("%s: packages: %w", b.r.Path, err)
	}
	if err := b.addDescription(t); err != nil {
		return err
	}
	b.tree = t
	return nil
}

func (b *builder) addKernel(t *initramfs.Tree) error {
	mods, _ := filepath.Glob(filepath.Join(b.kernelRoot, "lib/modules/*"))
	if len(mods) != 1 {
		return fmt.Errorf("kernel package has %d module trees, want 1", len(mods))
	}
	b.kernelVer = filepath.Base(mods[0])
	kernel, err := os.ReadFile(filepath.Join(b.kernelRoot, "boot", "vmlinuz-"+b.kernelVer))
	if err != nil {
		return err
	}
	b.kernel = kernel
	tree, err := kmod.Open(mods[0])
	if err != nil {
		return err
	}
	order, dep, err := tree.Closure(b.r.Profile.Modules)
	if err != nil {
		return fmt.Errorf("hardware %s: modules: %w", b.r.Profile.Name, err)
	}
	dst := "lib/modules/" + b.kernelVer
	for _, rel := range order {
		if err := t.AddHost(dst+"/"+rel, filepath.Join(mods[0], rel)); err != nil {
			return err
		}
	}
	t.AddData(dst+"/modules.dep", dep, 0o644)
	return t.AddHost(dst+"/modules.builtin", filepath.Join(mods[0], "modules.builtin"))
}

func (b *builder) addFirmware(t *initramfs.Tree) error {
	for _, f := range b.r.Profile.Firmware {
		if err := t.AddHost("lib/firmware/"+f, filepath.Join(b.r.FirmwareDir, f)); err != nil {
			return fmt.Errorf("%s: firmware_dir: %w", b.r.Path, err)
		}
	}
	return nil
}

// addDescription writes what PID 1 reads: the image description and the
// image's settings.
func (b *builder) addDescription(t *initramfs.Tree) error {
	desc := nodeimage.Config{
		Name: b.r.Name, Role: b.r.Role, Hostname: b.r.Hostname,
		Modules: b.r.Profile.Modules, DataDisk: b.r.Profile.DataDisk,
	}
	if w := b.r.Workload; w != nil {
		desc.Workload = &nodeimage.Workload{Kind: w.Kind, Template: workload.FileName(w.Kind)}
	}
	for _, s := range b.r.Services {
		path := s.Command
		if !strings.HasPrefix(path, "/") {
			path = "/bin/" + s.Command
		}
		desc.Services = append(desc.Services, nodeimage.Service{Name: s.Name, Path: path, Args: s.Args, Notify: s.Notify, WatchdogSec: s.WatchdogSec})
	}
	j, err := json.MarshalIndent(desc, "", "  ")
	if err != nil {
		return err
	}
	t.AddData(nodeimage.Path, append(j, '\n'), 0o644)
	if b.r.NodeConfig != "" {
		if err := t.AddHost(strings.TrimPrefix(nodeimage.NodeConfigPath, "/"), b.r.NodeConfig); err != nil {
			return err
		}
	}
	if len(b.r.Settings) > 0 {
		y, err := yaml.Marshal(b.r.Settings)
		if err != nil {
			return err
		}
		t.AddData("etc/tandem/settings.yaml", y, 0o644)
	}
	return nil
}

// commands are the Go packages built into the image: init and the tandem
// commands the services run.
func (b *builder) commands() []string {
	cmds := []string{"tandem/init"}
	for _, s := range b.r.Services {
		if !strings.HasPrefix(s.Command, "/") {
			cmds = append(cmds, "tandem/cmd/"+s.Command)
		}
	}
	return cmds
}

func (b *builder) buildInitramfs(ctx context.Context) error {
	for _, c := range b.commands()[1:] {
		if _, err := os.Stat(filepath.Join(b.o.ModuleDir, strings.TrimPrefix(c, "tandem/"))); err != nil {
			return fmt.Errorf("%s: services: command %s is not a tandem command (no %s in the source tree)", b.r.Path, filepath.Base(c), c)
		}
	}
	files, err := b.overlayFiles(overlay.RootFS)
	if err != nil {
		return err
	}
	img, err := initramfs.Build(ctx, initramfs.Options{
		ModuleDir: b.o.ModuleDir, Commands: b.commands(), Rescue: initramfs.RescueCommands,
		Files: b.tree, Overlay: files, CacheDir: b.o.CacheDir, Logf: b.logf,
	})
	if err != nil {
		return err
	}
	b.initramfs = img
	b.logf("initramfs: %.1f MiB compressed, kernel %s: %.1f MiB", float64(len(img))/(1<<20), b.kernelVer, float64(len(b.kernel))/(1<<20))
	return nil
}
