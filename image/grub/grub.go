// Package grub makes the boot loader of tandem's disks: GRUB core images
// for legacy BIOS and UEFI (grub-mkimage with Debian's GRUB modules), the
// BIOS boot-sector install done on the image file itself (no grub-install,
// no loop device), and the one grub.cfg with the A/B slot logic.
package grub

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Modules every core image embeds, so GRUB never loads a module from disk.
var commonModules = []string{
	"part_gpt", "fat", "search", "search_fs_uuid", "normal", "configfile",
	"linux", "loadenv", "test", "echo", "serial", "terminal", "halt",
	"reboot", "sleep", "gzio", "cat", "ls",
	// the console password's lock on the menu (password.cfg, grub.cfg)
	"password_pbkdf2",
}

// Dirs are GRUB module directories (Debian's grub-pc-bin and
// grub-efi-amd64-bin ship them under usr/lib/grub).
type Dirs struct {
	I386PC    string // .../usr/lib/grub/i386-pc
	X86_64EFI string // .../usr/lib/grub/x86_64-efi
}

// FSUUID formats a FAT volume ID as GRUB's search --fs-uuid expects it.
func FSUUID(volID uint32) string {
	return fmt.Sprintf("%04X-%04X", volID>>16, volID&0xffff)
}

// earlyConfig finds the boot partition by its FAT volume ID and points GRUB
// at its /grub directory, whichever disk number the firmware gave it.
func earlyConfig(volID uint32) string {
	return fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/grub\n", FSUUID(volID))
}

// CoreBIOS returns boot.img (the MBR code) and core.img for legacy BIOS.
func CoreBIOS(ctx context.Context, d Dirs, volID uint32) (bootImg, core []byte, err error) {
	bootImg, err = os.ReadFile(filepath.Join(d.I386PC, "boot.img"))
	if err != nil {
		return nil, nil, fmt.Errorf("grub bios: %w", err)
	}
	core, err = mkimage(ctx, d.I386PC, "i386-pc", volID, append([]string{"biosdisk"}, commonModules...))
	return bootImg, core, err
}

// CoreEFI returns the EFI application to install as /EFI/BOOT/BOOTX64.EFI.
func CoreEFI(ctx context.Context, d Dirs, volID uint32) ([]byte, error) {
	return mkimage(ctx, d.X86_64EFI, "x86_64-efi", volID, append([]string{"efi_gop"}, commonModules...))
}

func mkimage(ctx context.Context, modDir, format string, volID uint32, mods []string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "tandem-grub-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cfg := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(cfg, []byte(earlyConfig(volID)), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "core")
	args := append([]string{"-O", format, "-d", modDir, "-c", cfg, "-p", "/grub", "-o", out}, mods...)
	cmd := exec.CommandContext(ctx, "grub-mkimage", args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("grub-mkimage -O %s: %w: %s (make deps installs grub-common)", format, err, bytes.TrimSpace(msg))
	}
	return os.ReadFile(out)
}

// Offsets in boot.img and diskboot.img (GRUB's include/grub/i386/pc/boot.h).
const (
	sector          = 512
	mbrCodeEnd      = 0x1b8 // boot code ends where the disk signature starts
	kernelSectorOff = 0x5c  // LBA of core.img's first sector, 8 bytes
	driveCheckOff   = 0x66  // jump that works around BIOSes passing a wrong drive
	listSize        = 12    // blocklist entry: start (8), length (2), segment (2)
	firstListSeg    = 0x820 // core.img is loaded at 0x8000, after its first sector
)

// InstallBIOS does what grub-setup does for a disk whose BIOS boot
// partition starts at coreLBA: it puts boot.img's code into mbr (keeping
// its partition table), points it at core.img, and fills in core.img's
// blocklist so its first sector loads the rest. It changes mbr and core in
// place.
func InstallBIOS(mbr, bootImg, core []byte, coreLBA uint64) error {
	if len(mbr) != sector || len(bootImg) != sector {
		return fmt.Errorf("grub bios install: MBR and boot.img must be %d bytes", sector)
	}
	if len(core)%sector != 0 || len(core) < 2*sector {
		return fmt.Errorf("grub bios install: core.img of %d bytes is not whole sectors", len(core))
	}
	copy(mbr[:mbrCodeEnd], bootImg[:mbrCodeEnd])
	binary.LittleEndian.PutUint64(mbr[kernelSectorOff:], coreLBA)
	// A hard disk: replace the drive-check jump with two NOPs.
	mbr[driveCheckOff], mbr[driveCheckOff+1] = 0x90, 0x90
	list := core[sector-listSize : sector]
	binary.LittleEndian.PutUint64(list[0:], coreLBA+1)
	binary.LittleEndian.PutUint16(list[8:], uint16(len(core)/sector-1))
	binary.LittleEndian.PutUint16(list[10:], firstListSeg)
	return nil
}
