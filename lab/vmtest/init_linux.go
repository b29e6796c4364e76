package vmtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// This file is the guest side: it runs in the test binary as PID 1.

// IsGuest reports whether this process is the guest's /init (a test's
// TestMain then runs the guest half instead of the tests).
func IsGuest() bool { return os.Getpid() == 1 }

// Init mounts /proc, /sys, /dev (devtmpfs) and /tmp and loads the modules
// Initramfs put in /modules, dependencies first.
func Init() error {
	if err := mounts(); err != nil {
		return err
	}
	return loadModules()
}

// PowerOff syncs and powers the guest off (QEMU then exits); it never
// returns.
func PowerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) // if it fails, the test's timeout ends the guest
	select {}
}

func mounts() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// loadModules loads /modules/*.ko in the order the host wrote to
// /modules/order.
func loadModules() error {
	order, err := os.ReadFile("/modules/order")
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, name := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join("/modules", name))
		if err != nil {
			return fmt.Errorf("modules: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}
