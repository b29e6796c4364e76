// Package disk writes tandem's bootable disk image: a GPT disk (with a
// protective MBR carrying GRUB's BIOS boot code) holding a BIOS boot
// partition, the boot/ESP partition (FAT32: GRUB for UEFI, grub.cfg,
// grubenv and slots A and B) and the perm partition (ext4). The data
// partition is not in the image; the node's init creates it on first boot.
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"tandem/image/grub"
	"tandem/internal/nodeimage"
)

const (
	mib       = 1 << 20
	sector    = 512
	biosStart = 2048 // LBA of the BIOS boot partition (1 MiB aligned)
	biosSize  = mib
)

// Slot is one kernel + initramfs pair, plus files that belong with them
// (the mail workload's template).
type Slot struct {
	Kernel, Initramfs []byte
	Files             []File
}

// File is an extra file of a slot directory.
type File struct {
	Name string // base name in the slot directory
	Data []byte
}

func (s Slot) size() int {
	n := len(s.Kernel) + len(s.Initramfs)
	for _, f := range s.Files {
		n += len(f.Data)
	}
	return n
}

// Image is everything that goes on the disk.
type Image struct {
	// BootMiB and PermMiB size the partitions.
	BootMiB, PermMiB int
	// Seed makes the disk's GUIDs and volume IDs: the same seed gives the
	// same bytes; different images get different IDs.
	Seed string
	// Epoch is SOURCE_DATE_EPOCH, the time stamped on files.
	Epoch int64
	// BIOS: boot.img and core.img, nil if the image does not boot by BIOS.
	BootImg, CoreImg []byte
	// EFI is GRUB's EFI application, nil if the image does not boot by UEFI.
	EFI []byte
	// GrubCfg and GrubEnv go to /grub on the boot partition.
	GrubCfg, GrubEnv []byte
	// A and B are the slots; a new image carries the same pair in both.
	A, B Slot
}

// VolumeID is the FAT volume ID of the boot partition for a seed; GRUB's
// early config searches for it.
func VolumeID(seed string) uint32 {
	h := sha256.Sum256([]byte("volid " + seed))
	return binary.LittleEndian.Uint32(h[:4])
}

// guid returns a stable RFC 4122 (version 4 layout) GUID for seed and name.
func guid(seed, name string) string {
	h := sha256.Sum256([]byte(seed + " " + name))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Write creates the raw disk image at path (replacing it).
func Write(ctx context.Context, path string, im Image) error {
	bootSectors := uint64(im.BootMiB) * mib / sector
	permSectors := uint64(im.PermMiB) * mib / sector
	bootStart := uint64(biosStart + biosSize/sector)
	permStart := bootStart + bootSectors
	total := int64(permStart+permSectors)*sector + mib // room for the backup GPT
	need := int64(len(im.EFI)+len(im.GrubCfg)+len(im.GrubEnv)+im.A.size()+im.B.size()) + 4*mib
	if need > int64(bootSectors)*sector*9/10 {
		return fmt.Errorf("boot partition of %d MiB is too small for GRUB and two slots (%d MiB): raise disk.boot_mib", im.BootMiB, need/mib+1)
	}
	os.Remove(path)
	if err := writeTable(path, total, bootStart, permStart, permSectors, im); err != nil {
		return err
	}
	if im.BootImg != nil {
		if err := installBIOS(path, im.BootImg, im.CoreImg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return mkfsPerm(ctx, path, int64(permStart)*sector, im)
}

// writeTable creates the disk file with its partition table and fills the
// boot partition.
func writeTable(path string, total int64, bootStart, permStart, permSectors uint64, im Image) error {
	d, err := diskfs.Create(path, total, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer d.Close()
	table := &gpt.Table{
		GUID: guid(im.Seed, "disk"), ProtectiveMBR: true, LogicalSectorSize: sector, PhysicalSectorSize: sector,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: biosStart, End: bootStart - 1, Type: gpt.BIOSBoot, Name: nodeimage.PartBIOS, GUID: guid(im.Seed, nodeimage.PartBIOS)},
			{Index: 2, Start: bootStart, End: permStart - 1, Type: gpt.EFISystemPartition, Name: nodeimage.PartBoot, GUID: guid(im.Seed, nodeimage.PartBoot)},
			{Index: 3, Start: permStart, End: permStart + permSectors - 1, Type: gpt.LinuxFilesystem, Name: nodeimage.PartPerm, GUID: guid(im.Seed, nodeimage.PartPerm)},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("%s: partition: %w", path, err)
	}
	if err := writeBoot(d, int64(bootStart)*sector, im); err != nil {
		return fmt.Errorf("%s: boot partition: %w", path, err)
	}
	return nil
}

// writeBoot makes the FAT32 boot partition and fills it.
func writeBoot(d *disk.Disk, start int64, im Image) error {
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 2, FSType: filesystem.TypeFat32, VolumeLabel: "TANDEMBOOT", Reproducible: true})
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"/grub/grub.cfg", im.GrubCfg},
		{"/grub/grubenv", im.GrubEnv},
		{grub.KernelPath("A"), im.A.Kernel},
		{grub.InitrdPath("A"), im.A.Initramfs},
		{grub.KernelPath("B"), im.B.Kernel},
		{grub.InitrdPath("B"), im.B.Initramfs},
	}
	if im.EFI != nil {
		files = append(files, struct {
			name string
			data []byte
		}{"/EFI/BOOT/BOOTX64.EFI", im.EFI})
	}
	for _, s := range []struct {
		name string
		slot Slot
	}{{"A", im.A}, {"B", im.B}} {
		for _, f := range s.slot.Files {
			files = append(files, struct {
				name string
				data []byte
			}{grub.SlotDir(s.name) + "/" + f.Name, f.Data})
		}
	}
	for _, f := range files {
		if err := fs.Mkdir(path.Dir(f.name)); err != nil {
			return fmt.Errorf("mkdir %s: %w", path.Dir(f.name), err)
		}
		w, err := fs.OpenFile(f.name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("create %s: %w", f.name, err)
		}
		if _, err := w.Write(f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		w.Close()
	}
	// go-diskfs writes volume ID 0 when reproducible; GRUB finds the boot
	// partition by this ID, so give it the image's own (boot sector and
	// its backup in sector 6, FAT32 offset 0x43).
	return patchVolumeID(d, start, VolumeID(im.Seed))
}

func patchVolumeID(d *disk.Disk, start int64, id uint32) error {
	w, err := d.Backend.Writable()
	if err != nil {
		return err
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], id)
	for _, s := range []int64{0, 6} {
		if _, err := w.WriteAt(b[:], start+s*sector+0x43); err != nil {
			return err
		}
	}
	return nil
}

// installBIOS puts GRUB's boot code in the MBR and core.img in the BIOS
// boot partition.
func installBIOS(path string, bootImg, core []byte) error {
	if len(core) > biosSize {
		return fmt.Errorf("GRUB core.img of %d bytes does not fit the %d-byte BIOS boot partition", len(core), biosSize)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	mbr := make([]byte, sector)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, sector), mbr); err != nil {
		return err
	}
	core = append([]byte(nil), core...)
	if pad := len(core) % sector; pad != 0 {
		core = append(core, make([]byte, sector-pad)...)
	}
	if err := grub.InstallBIOS(mbr, bootImg, core, biosStart); err != nil {
		return err
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(core, biosStart*sector); err != nil {
		return err
	}
	return f.Close()
}

// mkfsPerm makes the ext4 perm file system in place with e2fsprogs'
// mke2fs, which needs no root and no loop device. UUID, hash seed and time
// are fixed so the bytes are reproducible; every node still gets its own
// identity in the files it writes there.
func mkfsPerm(ctx context.Context, path string, offset int64, im Image) error {
	u := guid(im.Seed, "perm-fs")
	cmd := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", nodeimage.PartPerm,
		"-U", u, "-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0", offset, u),
		path, fmt.Sprintf("%dk", im.PermMiB*1024))
	conf, err := os.CreateTemp("", "tandem-mke2fs-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(conf.Name())
	_, err = conf.WriteString(mke2fsConf)
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mke2fs config: %w", err)
	}
	cmd.Env = append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", im.Epoch), "MKE2FS_CONFIG="+conf.Name())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs perm: %w: %s (make deps installs e2fsprogs)", err, out)
	}
	return nil
}

// mke2fsConf pins the file system's features, so the build host's own
// /etc/mke2fs.conf cannot change the image.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`
