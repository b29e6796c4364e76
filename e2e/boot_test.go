package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/image"
	"tandem/image/disk"
	"tandem/image/grub"
	"tandem/internal/grubenv"
	"tandem/internal/qemu"
)

// Bounds against hangs; TCG on a loaded 2-core machine is slow.
const (
	bootLimit = 4 * time.Minute
	stepLimit = 90 * time.Second
)

// TestBIOSBootPowerOffReboot boots the raw image with SeaBIOS on a disk
// larger than the image: first boot creates the data partition and reaches
// ready; ACPI power-off stops services and unmounts before powering off;
// the next boot finds the data partition already there.
func TestBIOSBootPowerOffReboot(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := overlay(t, raw, 2048)
	vm := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm, 0, "init: created data partition /dev/vda4", bootLimit)
	i := wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	if err := vm.Monitor("system_powerdown"); err != nil {
		t.Fatal(err)
	}
	wait(t, vm, i, "tandem: poweroff requested: stopping services", stepLimit)
	wait(t, vm, i, "tandem: poweroff now", stepLimit)
	ctx, cancel := context.WithTimeout(context.Background(), stepLimit)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("QEMU did not exit after ACPI power-off: %v", err)
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l, "unmount /perm") || strings.Contains(l, "did not stop") {
			t.Errorf("unclean shutdown: %q", l)
		}
	}

	vm2 := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm2, 0, "tandem: ready (slot A", bootLimit)
	if count(vm2, "init: data partition /dev/vda4 present") != 1 {
		t.Error("second boot did not find the data partition made by the first")
	}
}

// TestUEFIBoot boots the qcow2 image with OVMF.
func TestUEFIBoot(t *testing.T) {
	dir, m := kvmNode(t)
	q, _ := m.Path(dir, image.KindQcow2)
	vm := boot(t, qemu.Config{Disk: overlay(t, q, 0), Firmware: qemu.UEFI, Net: true})
	wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	if count(vm, "EFI v") == 0 && count(vm, "efi:") == 0 {
		t.Error("kernel log shows no EFI firmware: not booted by OVMF")
	}
}

// TestPXEBoot network-boots through iPXE and the iPXE script, with no disk.
func TestPXEBoot(t *testing.T) {
	dir, m := kvmNode(t)
	ipxe, _ := m.Path(dir, image.KindIPXE)
	vm := boot(t, qemu.Config{TFTPDir: dir, BootFile: ipxe[len(dir)+1:], Firmware: qemu.BIOS})
	wait(t, vm, 0, "init: no tandem disk: running diskless (PXE boot)", bootLimit)
	wait(t, vm, 0, "tandem: ready (slot none (PXE)", bootLimit)
}

var startedRE = regexp.MustCompile(`service time started \(pid (\d+)\)`)

// TestKilledServiceRestarts kills a service with SIGKILL from the rescue
// shell and sees PID 1 restart it and the service report ready again.
func TestKilledServiceRestarts(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	kernel, _ := m.Path(dir, image.KindKernel)
	initrd, _ := m.Path(dir, image.KindInitramfs)
	vm := boot(t, qemu.Config{
		Disk: overlay(t, raw, 0), Net: true, Kernel: kernel, Initrd: initrd,
		Append: m.Cmdline + " tandem.slot=A tandem.rescue=1",
	})
	i := wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	s := wait(t, vm, 0, "service time started", stepLimit)
	pid := startedRE.FindStringSubmatch(vm.Line(s))[1]
	time.Sleep(2 * time.Second) // let the rescue shell come up
	if err := vm.Send("kill -9 " + pid + "\n"); err != nil {
		t.Fatal(err)
	}
	j := wait(t, vm, i, "service time (pid "+pid+") exited: killed by killed", stepLimit)
	k := wait(t, vm, j, "service time started (pid", stepLimit)
	wait(t, vm, k, "service time ready", stepLimit)
}

// TestSlotB flips the environment to slot B on trial: GRUB boots B, PID 1
// reaches ready and marks B good.
func TestSlotB(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := copyRaw(t, raw)
	setEnv(t, d, func(e grubenv.Env) { e.TrySlot("B", 3) })
	vm := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm, 0, "tandem.slot=B", bootLimit)
	wait(t, vm, 0, "tandem: ready (slot B", bootLimit)
	wait(t, vm, 0, "init: slot B marked good", stepLimit)
	powerOff(t, vm)
	env := readEnv(t, d)
	if env[grubenv.VarSlot] != "B" || env[grubenv.VarTries] != "" {
		t.Errorf("grubenv after good boot of B = %v, want slot B with no tries left to count", env)
	}
}

// TestBrokenSlotFallsBack installs a slot B whose initramfs is garbage:
// the kernel panics and reboots, GRUB counts the tries down, and once they
// run out it goes back to slot A for good.
func TestBrokenSlotFallsBack(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := copyRaw(t, raw)
	old, err := disk.ReadBootFile(d, grub.InitrdPath("B"))
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, len(old))
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	if err := disk.OverwriteBootFile(d, grub.InitrdPath("B"), junk); err != nil {
		t.Fatal(err)
	}
	const tries = 2
	setEnv(t, d, func(e grubenv.Env) { e.TrySlot("B", tries) })
	vm := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm, 0, "slot B used up its tries, falling back", 2*bootLimit)
	wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	if n := count(vm, "Command line: BOOT_IMAGE=/slot-B/vmlinuz"); n != tries {
		t.Errorf("slot B was booted %d times, want %d (its tries)", n, tries)
	}
	powerOff(t, vm)
	env := readEnv(t, d)
	if env[grubenv.VarSlot] != "A" || env[grubenv.VarFailed] != "B" {
		t.Errorf("grubenv after fallback = %v, want slot A, failed B", env)
	}
}

func setEnv(t *testing.T, d string, f func(grubenv.Env)) {
	t.Helper()
	env := readEnv(t, d)
	f(env)
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.OverwriteBootFile(d, "/grub/grubenv", b); err != nil {
		t.Fatal(err)
	}
}

func readEnv(t *testing.T, d string) grubenv.Env {
	t.Helper()
	b, err := disk.ReadBootFile(d, "/grub/grubenv")
	if err != nil {
		t.Fatal(err)
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func powerOff(t *testing.T, vm *qemu.VM) {
	t.Helper()
	if err := vm.Monitor("system_powerdown"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepLimit)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("QEMU did not exit after ACPI power-off: %v", err)
	}
}
