package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"tandem/image"
	"tandem/internal/passwd"
	"tandem/internal/service"
	"tandem/lab"
	"tandem/lab/qemu"
)

func runBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("boot", "usage: tandem boot [-firmware bios|uefi] [-pxe] [-rescue] [-disk-mib N] DIR\n\nBoots a build (DIR holds manifest.json) under QEMU (TCG) with the serial console on this terminal;\nthe built image is not changed (the VM writes to a temporary overlay). Ctrl-A X quits QEMU.\n", stderr)
	fw := fs.String("firmware", qemu.BIOS, "firmware: bios (SeaBIOS) or uefi (OVMF)")
	pxe := fs.Bool("pxe", false, "network-boot the PXE files through iPXE instead of the disk")
	diskMiB := fs.Int("disk-mib", 4096, "size of the VM's disk; the data partition fills what the image does not use")
	mem := fs.Int("mem", 1024, "memory in MiB")
	rescue := fs.Bool("rescue", false, "boot the slot's kernel directly with tandem.rescue=1: a root shell on the console, behind a fresh console password it prints")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("boot: want one build directory, got %d arguments", fs.NArg())
	}
	if *fw != qemu.BIOS && *fw != qemu.UEFI {
		return fmt.Errorf("boot: -firmware %q: want bios or uefi", *fw)
	}
	dir := fs.Arg(0)
	m, err := image.ReadManifest(dir)
	if err != nil {
		return fmt.Errorf("boot: %w (build it first with tandem build)", err)
	}
	tmp, err := os.MkdirTemp("", "tandem-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg := qemu.Config{Firmware: *fw, MemoryMiB: *mem, Net: true}
	if err := bootSource(&cfg, m, dir, tmp, *pxe, *rescue, *diskMiB); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if *rescue {
		pw, err := seedRescue(cfg.Disk)
		if err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		fmt.Fprintf(stderr, "rescue shell: the console password is %s\n", pw)
	}
	cmd, err := qemu.Command(ctx, cfg, tmp, filepath.Join(tmp, "monitor.sock"))
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	fmt.Fprintf(stderr, "booting %s (%s); Ctrl-A X quits\n", m.Recipe, *fw)
	return cmd.Run()
}

// seedRescue seeds the raw disk with a node config that has only a host
// name and a fresh console password, and returns the password: the rescue
// shell opens only behind one.
func seedRescue(disk string) (string, error) {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := strings.ToLower(base32.StdEncoding.EncodeToString(b))
	h, err := passwd.Hash(pw)
	if err != nil {
		return "", err
	}
	return pw, lab.SeedDisk(disk, map[string][]byte{"node.yaml": []byte("# tandem boot -rescue\nhostname: rescue\nconsole:\n  password: " + h + "\n")})
}

// bootSource points cfg at the disk, the PXE files or the kernel.
func bootSource(cfg *qemu.Config, m *image.Manifest, dir, tmp string, pxe, rescue bool, diskMiB int) error {
	if pxe {
		ipxe, err := m.Path(dir, image.KindIPXE)
		if err != nil {
			return err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		cfg.TFTPDir, cfg.BootFile, cfg.Net = abs, filepath.Base(ipxe), false
		return nil
	}
	base, err := m.Path(dir, image.KindQcow2)
	if err != nil {
		if base, err = m.Path(dir, image.KindRaw); err != nil {
			return err
		}
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	if rescue {
		// A raw copy the console password can be seeded into.
		cfg.Disk = filepath.Join(tmp, "disk.raw")
		if out, err := exec.Command("qemu-img", "convert", "-q", "-O", "raw", abs, cfg.Disk).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: qemu-img convert: %w: %s", abs, err, strings.TrimSpace(string(out)))
		}
		if err := os.Truncate(cfg.Disk, int64(diskMiB)<<20); err != nil {
			return err
		}
	} else {
		cfg.Disk = filepath.Join(tmp, "disk.qcow2")
		if err := qemu.Overlay(cfg.Disk, abs, diskMiB); err != nil {
			return err
		}
	}
	if rescue {
		if cfg.Kernel, err = m.Path(dir, image.KindKernel); err != nil {
			return err
		}
		if cfg.Initrd, err = m.Path(dir, image.KindInitramfs); err != nil {
			return err
		}
		cfg.Append = m.Cmdline + " tandem.slot=A tandem.rescue=1"
	}
	return nil
}
