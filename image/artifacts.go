package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"tandem/image/disk"
	"tandem/image/grub"
	"tandem/image/qcow2"
	"tandem/internal/atomicfile"
	"tandem/internal/grubenv"
)

// Artifact kinds in manifest.json.
const (
	KindRaw       = "raw"
	KindQcow2     = "qcow2"
	KindKernel    = "kernel"
	KindInitramfs = "initramfs"
	KindIPXE      = "ipxe"
)

// Artifact is one built file.
type Artifact struct {
	Kind   string `json:"kind"`
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes a build; it is written as manifest.json.
type Manifest struct {
	Recipe    string       `json:"recipe"`
	Role      string       `json:"role"`
	Hardware  string       `json:"hardware"`
	Epoch     int64        `json:"source_date_epoch"`
	Kernel    string       `json:"kernel"`
	Cmdline   string       `json:"cmdline"`
	Packages  []PackageRef `json:"packages"`
	Overlays  []OverlayRef `json:"overlays,omitempty"`
	Artifacts []Artifact   `json:"artifacts"`
}

// PackageRef records a Debian package that went into the build.
type PackageRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// ManifestFile is the manifest's name in the output directory.
const ManifestFile = "manifest.json"

// cmdline is the kernel command line of both slots (GRUB adds the slot).
func (b *builder) cmdline() string {
	console := b.r.Profile.Console
	args := []string{"console=tty0", "console=" + console, "panic=10"}
	args = append(args, b.r.Profile.KernelArgs...)
	return strings.Join(append(args, b.r.KernelArgs...), " ")
}

func (b *builder) writeArtifacts(ctx context.Context) error {
	name := b.r.Name
	if b.wantsDisk() {
		raw := filepath.Join(b.stage, name+".raw")
		if err := b.writeDisk(ctx, raw); err != nil {
			return err
		}
		if slices.Contains(b.r.Outputs, "qcow2") {
			b.logf("converting to qcow2")
			if err := qcow2.Convert(filepath.Join(b.stage, name+".qcow2"), raw); err != nil {
				return err
			}
			b.artifacts = append(b.artifacts, Artifact{Kind: KindQcow2, File: name + ".qcow2"})
		}
		if slices.Contains(b.r.Outputs, "raw") {
			b.artifacts = append(b.artifacts, Artifact{Kind: KindRaw, File: name + ".raw"})
		} else {
			os.Remove(raw)
		}
	}
	if slices.Contains(b.r.Outputs, "pxe") {
		if err := b.writePXE(); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) writeDisk(ctx context.Context, path string) error {
	seed := fmt.Sprintf("%s %d", b.r.Name, b.o.Epoch)
	volID := disk.VolumeID(seed)
	unit, speed := consoleUnit(b.r.Profile.Console)
	cfg, err := grub.Config{SerialUnit: unit, Speed: speed, Cmdline: b.cmdline(), TimeoutSec: 1}.Render()
	if err != nil {
		return err
	}
	env, err := grubenv.Initial().Encode()
	if err != nil {
		return err
	}
	im := disk.Image{
		BootMiB: b.r.Disk.BootMiB, PermMiB: b.r.Disk.PermMiB, Seed: seed, Epoch: b.o.Epoch,
		GrubCfg: cfg, GrubEnv: env,
		A: disk.Slot{Kernel: b.kernel, Initramfs: b.initramfs, Files: b.slotFiles()},
		B: disk.Slot{Kernel: b.kernel, Initramfs: b.initramfs, Files: b.slotFiles()},
	}
	if b.r.Profile.HasBoot("bios") {
		b.logf("grub: BIOS core image")
		if im.BootImg, im.CoreImg, err = grub.CoreBIOS(ctx, b.grubDirs, volID); err != nil {
			return err
		}
	}
	if b.r.Profile.HasBoot("uefi") {
		b.logf("grub: UEFI image")
		if im.EFI, err = grub.CoreEFI(ctx, b.grubDirs, volID); err != nil {
			return err
		}
	}
	b.logf("writing disk image")
	return disk.Write(ctx, path, im)
}

// consoleUnit turns "ttyS1,115200" into (1, 115200); a VGA console gives
// serial unit 0.
func consoleUnit(c string) (int, int) {
	dev, speed, _ := strings.Cut(c, ",")
	unit, _ := strconv.Atoi(strings.TrimPrefix(dev, "ttyS"))
	sp, err := strconv.Atoi(strings.TrimRight(speed, "noe78"))
	if err != nil || sp == 0 {
		sp = 115200
	}
	return unit, sp
}

// writePXE writes the kernel, the initramfs and an iPXE script that boots
// them with paths relative to the script, so the three files can be served
// from one TFTP or HTTP directory.
func (b *builder) writePXE() error {
	n := b.r.Name
	files := []struct {
		kind, file string
		data       []byte
	}{
		{KindKernel, n + ".vmlinuz", b.kernel},
		{KindInitramfs, n + ".initramfs.img", b.initramfs},
		{KindIPXE, n + ".ipxe", []byte(fmt.Sprintf("#!ipxe\n# tandem %s: PXE boot (diskless unless a tandem disk is present)\nkernel %s.vmlinuz %s tandem.boot=pxe initrd=%s.initramfs.img\ninitrd %s.initramfs.img\nboot\n", n, n, b.cmdline(), n, n))},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(b.stage, f.file), f.data, 0o644); err != nil {
			return err
		}
		b.artifacts = append(b.artifacts, Artifact{Kind: f.kind, File: f.file})
	}
	return nil
}

// publish hashes the staged artifacts, moves them into the output
// directory and writes manifest.json last.
func (b *builder) publish() (*Manifest, error) {
	m := &Manifest{Recipe: b.r.Name, Role: b.r.Role, Hardware: b.r.Hardware, Epoch: b.o.Epoch, Kernel: b.kernelVer, Cmdline: b.cmdline(), Overlays: b.overlayRefs()}
	for _, p := range b.used {
		m.Packages = append(m.Packages, PackageRef{p.Name, p.Version, p.SHA256})
	}
	sort.Slice(m.Packages, func(i, j int) bool { return m.Packages[i].Name < m.Packages[j].Name })
	m.Packages = slices.CompactFunc(m.Packages, func(a, b PackageRef) bool { return a.Name == b.Name })
	for i := range b.artifacts {
		a := &b.artifacts[i]
		size, sum, err := hashFile(filepath.Join(b.stage, a.File))
		if err != nil {
			return nil, err
		}
		a.Size, a.SHA256 = size, sum
	}
	sort.Slice(b.artifacts, func(i, j int) bool { return b.artifacts[i].File < b.artifacts[j].File })
	m.Artifacts = b.artifacts
	for _, a := range m.Artifacts {
		if err := os.Rename(filepath.Join(b.stage, a.File), filepath.Join(b.o.OutDir, a.File)); err != nil {
			return nil, err
		}
	}
	j, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return m, atomicfile.Write(filepath.Join(b.o.OutDir, ManifestFile), append(j, '\n'), 0o644)
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// ReadManifest reads manifest.json from a build's output directory.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// Path returns the path of the first artifact of kind in dir.
func (m *Manifest) Path(dir, kind string) (string, error) {
	for _, a := range m.Artifacts {
		if a.Kind == kind {
			return filepath.Join(dir, a.File), nil
		}
	}
	return "", fmt.Errorf("build %s in %s has no %s artifact", m.Recipe, dir, kind)
}
