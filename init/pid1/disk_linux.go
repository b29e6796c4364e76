package pid1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"tandem/internal/nodeimage"
)

// bootDisk is the disk tandem booted from and its partitions' devices.
type bootDisk struct {
	dev  string            // e.g. /dev/vda
	part map[string]string // GPT partition name -> device
}

const (
	diskWait       = 30 * time.Second
	minDataSectors = 64 << 20 / 512
)

// findDisk waits for the disk holding the tandem-boot partition. A PXE boot
// (tandem.boot=pxe) has no boot disk; it runs diskless if none is found.
func (in *Init) findDisk(ctx context.Context) error {
	pxe := in.settings.GetOr("boot", "") == "pxe"
	deadline := time.Now().Add(diskWait)
	for {
		if d := scanDisks(); d != nil {
			in.disk = d
			in.log.Logf("boot disk %s: %v", d.dev, d.part)
			return nil
		}
		if pxe {
			in.log.Logf("no tandem disk: running diskless (PXE boot)")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no disk with a %s partition after %s", nodeimage.PartBoot, diskWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scanDisks looks through /sys/class/block for tandem's partitions.
func scanDisks() *bootDisk {
	ents, _ := os.ReadDir("/sys/class/block")
	byDisk := map[string]map[string]string{}
	for _, e := range ents {
		ue, err := os.ReadFile(filepath.Join("/sys/class/block", e.Name(), "uevent"))
		if err != nil {
			continue
		}
		name := ueventValue(ue, "PARTNAME")
		if !strings.HasPrefix(name, "tandem-") {
			continue
		}
		// The partition's sysfs directory sits inside its disk's.
		real, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", e.Name()))
		if err != nil {
			continue
		}
		disk := "/dev/" + filepath.Base(filepath.Dir(real))
		if byDisk[disk] == nil {
			byDisk[disk] = map[string]string{}
		}
		byDisk[disk][name] = "/dev/" + e.Name()
	}
	for disk, parts := range byDisk {
		if parts[nodeimage.PartBoot] != "" && parts[nodeimage.PartPerm] != "" {
			return &bootDisk{dev: disk, part: parts}
		}
	}
	return nil
}

// partOn returns the device of the partition named name on disk dev.
func partOn(dev, name string) string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/class/block", filepath.Base(dev), "*", "uevent"))
	for _, ue := range dirs {
		if b, err := os.ReadFile(ue); err == nil && ueventValue(b, "PARTNAME") == name {
			return "/dev/" + filepath.Base(filepath.Dir(ue))
		}
	}
	return ""
}

func ueventValue(ue []byte, key string) string {
	for _, line := range bytes.Split(ue, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(key+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// ensureDataPartition creates the data partition on first boot from the
// free space after the image's partitions (moving the backup GPT to the
// real end of the disk, which is larger than the image was). It runs
// before anything on the disk is mounted so the kernel can re-read the
// table. It never touches a disk whose table it does not recognise.
func (in *Init) ensureDataPartition(ctx context.Context) error {
	if in.disk == nil {
		return nil
	}
	if dev := in.disk.part[nodeimage.PartData]; dev != "" {
		in.log.Logf("data partition %s present", dev)
		return nil
	}
	dev := in.disk.dev
	if in.image.DataDisk != "" {
		dev = in.image.DataDisk
		for wait := time.Now().Add(diskWait); time.Now().Before(wait); time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(dev); err == nil {
				break
			}
		}
		if p := partOn(dev, nodeimage.PartData); p != "" {
			in.disk.part[nodeimage.PartData] = p
			in.log.Logf("data partition %s present", p)
			return nil
		}
		if err := prepareDataDisk(dev); err != nil {
			return err
		}
	} else if err := addDataPartition(dev); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p := partOn(dev, nodeimage.PartData); p != "" {
			in.disk.part[nodeimage.PartData] = p
			in.log.Logf("created data partition %s", p)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("data partition written but the kernel shows no device for it")
}

// prepareDataDisk gives the profile's data disk a GPT with one data
// partition, but only if the disk is blank (its first MiB all zeros): a
// disk with anything on it is never touched.
func prepareDataDisk(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("data disk: %w", err)
	}
	head := make([]byte, 1<<20)
	_, err = f.ReadAt(head, 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("data disk %s: %w", dev, err)
	}
	if !bytes.Equal(head, make([]byte, len(head))) {
		return fmt.Errorf("data disk %s is not blank and has no %s partition: not touching it", dev, nodeimage.PartData)
	}
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer d.Close()
	end := uint64(d.Size/512) - 34
	t := &gpt.Table{ProtectiveMBR: true, LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: end - 1, Type: gpt.LinuxFilesystem, Name: nodeimage.PartData},
	}}
	if err := d.Partition(t); err != nil {
		return fmt.Errorf("%s: write partition table: %w", dev, err)
	}
	return d.ReReadPartitionTable()
}

func addDataPartition(dev string) error {
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return fmt.Errorf("%s: read partition table: %w", dev, err)
	}
	old, ok := pt.(*gpt.Table)
	if !ok {
		return fmt.Errorf("%s: not a GPT disk", dev)
	}
	sectors := uint64(d.Size / 512)
	// A fresh table sized for the whole disk: same disk GUID and partitions.
	t := &gpt.Table{GUID: old.GUID, ProtectiveMBR: true, LogicalSectorSize: 512, PhysicalSectorSize: 512}
	var last uint64
	for _, p := range old.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		cp := *p
		t.Partitions = append(t.Partitions, &cp)
		last = max(last, p.End)
	}
	start := (last/2048 + 1) * 2048 // 1 MiB aligned
	end := sectors - 34             // backup array (32 sectors) and header
	if end <= start || end-start < minDataSectors {
		return fmt.Errorf("%s: only %d MiB free after the image's partitions; need at least %d MiB for data",
			dev, (sectors-start)*512>>20, minDataSectors*512>>20)
	}
	t.Partitions = append(t.Partitions, &gpt.Partition{
		Index: len(t.Partitions) + 1, Start: start, End: end - 1, Type: gpt.LinuxFilesystem, Name: nodeimage.PartData,
	})
	if err := d.Partition(t); err != nil {
		return fmt.Errorf("%s: write partition table: %w", dev, err)
	}
	if err := d.ReReadPartitionTable(); err != nil {
		return fmt.Errorf("%s: tell the kernel about the new partition: %w", dev, err)
	}
	return nil
}

// mountDisk mounts the boot partition (GRUB, slots, grubenv) at /boot and
// perm at /perm.
func (in *Init) mountDisk(context.Context) error {
	if in.disk == nil {
		return doMount(mount{"tmpfs", "/perm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"})
	}
	if err := doMount(mount{in.disk.part[nodeimage.PartBoot], "/boot", "vfat", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "umask=0077,flush"}); err != nil {
		return err
	}
	return doMount(mount{in.disk.part[nodeimage.PartPerm], "/perm", "ext4", unix.MS_NOSUID | unix.MS_NODEV, ""})
}
