package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"tandem/image"
	"tandem/internal/nodeimage"
)

// Each node's disk is a sparse raw copy of its built image, grown to
// Node.DiskMiB, rather than a qcow2 overlay over it:
//
//   - the lab writes the node's seed files into the copy's FAT32 boot
//     partition with go-diskfs before the first boot, which a qcow2
//     overlay would need qemu-nbd (a kernel module and root) to allow;
//   - QEMU runs its disks with cache=unsafe; a SIGKILLed QEMU (Kill, a
//     power cut) can lose the qcow2 metadata it held in memory, but a raw
//     file only ever holds what the guest wrote, so Boot after Kill finds
//     the disk as a real one would be after a power cut.
//
// The copy costs what the image holds, not its size: the built images are
// sparse (kvm-node: 323 MiB apparent, about 50 MiB of data), and
// qemu-img convert keeps holes. The built image is only read.

// createDisk makes node n's disk at dst: a sparse raw copy of the build in
// images/n.Image (its raw artifact, else its qcow2), grown to n.DiskMiB,
// with n.Seed in its seed directory.
func createDisk(dst, images string, n Node) error {
	base, format, err := imageFile(filepath.Join(images, n.Image))
	if err != nil {
		return err
	}
	os.Remove(dst)
	if out, err := exec.Command("qemu-img", "convert", "-q", "-f", format, "-O", "raw", base, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s to %s: qemu-img convert: %w: %s", base, dst, err, strings.TrimSpace(string(out)))
	}
	st, err := os.Stat(dst)
	if err != nil {
		return err
	}
	if size := int64(n.DiskMiB) << 20; size > st.Size() {
		if err := os.Truncate(dst, size); err != nil {
			return fmt.Errorf("grow %s to %d MiB: %w", dst, n.DiskMiB, err)
		}
	}
	if len(n.Seed) == 0 {
		return nil
	}
	return SeedDisk(dst, n.Seed)
}

// imageFile returns a build's raw disk, or its qcow2 one, and the format.
func imageFile(dir string) (file, format string, err error) {
	m, err := image.ReadManifest(dir)
	if err != nil {
		return "", "", fmt.Errorf("%w (build it with tandem build)", err)
	}
	if p, err := m.Path(dir, image.KindRaw); err == nil {
		return p, "raw", nil
	}
	p, err := m.Path(dir, image.KindQcow2)
	return p, "qcow2", err
}

// SeedDisk writes files (name relative to the seed directory -> content)
// into the seed directory (nodeimage.SeedDir) of the boot partition of the raw
// disk image at path, replacing files of the same name. At its next boot
// the node's PID 1 moves them to /perm/tandem/NAME (docs/image.md), so
// "node.yaml" becomes the node's configuration.
func SeedDisk(disk string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		if !fs.ValidPath(name) || name == "." {
			return fmt.Errorf("seed %s: file name %q: want a relative path without . or .. elements", disk, name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("seed %s: %w", disk, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return fmt.Errorf("seed %s: read partition table: %w", disk, err)
	}
	part, err := bootPartition(pt)
	if err != nil {
		return fmt.Errorf("seed %s: %w", disk, err)
	}
	fsys, err := d.GetFilesystem(part)
	if err != nil {
		return fmt.Errorf("seed %s: boot partition: %w", disk, err)
	}
	for _, name := range names {
		p := path.Join(nodeimage.SeedDir, name)
		if err := fsys.Mkdir(path.Dir(p)); err != nil {
			return fmt.Errorf("seed %s: mkdir %s: %w", disk, path.Dir(p), err)
		}
		f, err := fsys.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("seed %s: create %s: %w", disk, p, err)
		}
		if _, err := f.Write(files[name]); err != nil {
			f.Close()
			return fmt.Errorf("seed %s: write %s: %w", disk, p, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("seed %s: write %s: %w", disk, p, err)
		}
	}
	return nil
}

// bootPartition returns the number of the tandem-boot partition.
func bootPartition(pt partition.Table) (int, error) {
	t, ok := pt.(*gpt.Table)
	if !ok {
		return 0, errors.New("not a GPT disk")
	}
	for i, p := range t.Partitions {
		if p != nil && p.Name == nodeimage.PartBoot {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("no %s partition", nodeimage.PartBoot)
}
