package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"tandem/image"
	"tandem/image/disk"
	"tandem/image/grub"
	"tandem/internal/grubenv"
	"tandem/internal/nodeimage"
	"tandem/internal/passwd"
	"tandem/internal/testenv"
	"tandem/lab"
	"tandem/lab/qemu"
)

// Bounds against hangs; TCG on a loaded 2-core machine is slow.
const (
	bootLimit = 4 * time.Minute
	stepLimit = 90 * time.Second
)

// TestBIOSBootPowerOffReboot boots the raw image with SeaBIOS on a disk
// larger than the image, with a node.yaml in the boot partition's seed
// directory: first boot creates the data partition, moves the seed into
// perm and runs with it (its host name), and reaches ready; ACPI
// power-off stops services and unmounts before powering off, leaving no
// seed on the boot partition; the next boot finds the data partition
// already there and runs with the config perm kept.
func TestBIOSBootPowerOffReboot(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := copyRaw(t, raw)
	if err := os.Truncate(d, 2048<<20); err != nil {
		t.Fatal(err)
	}
	seed := "/boot" + nodeimage.SeedDir + "/node.yaml"
	if err := lab.SeedDisk(d, map[string][]byte{"node.yaml": seededConfig(t, "kvm-node", "seeded-a", "")}); err != nil {
		t.Fatal(err)
	}
	vm := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm, 0, "init: created data partition /dev/vda4", bootLimit)
	wait(t, vm, 0, "init: seed "+seed+" moved to /perm/tandem/node.yaml", bootLimit)
	i := wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	if count(vm, "hostname kvm-node -> seeded-a") != 1 {
		t.Error("first boot: the seeded node.yaml's host name was not applied")
	}
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
	if b, err := disk.ReadBootFile(d, nodeimage.SeedDir+"/node.yaml"); err == nil {
		t.Errorf("boot partition still holds the seed after the boot that moved it: %q", b)
	}

	vm2 := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	wait(t, vm2, 0, "tandem: ready (slot A", bootLimit)
	if count(vm2, "init: data partition /dev/vda4 present") != 1 {
		t.Error("second boot did not find the data partition made by the first")
	}
	if count(vm2, "init: no seed files in /boot"+nodeimage.SeedDir) != 1 || count(vm2, "hostname kvm-node -> seeded-a") != 1 {
		t.Error("second boot: want no seed files and the seeded host name, from perm")
	}
}

// seededConfig returns recipes/IMAGE.config.yaml with another host name
// and, if ntp is set, that NTP server.
func seededConfig(t *testing.T, image, hostname, ntp string) []byte {
	t.Helper()
	b, err := os.ReadFile("../recipes/" + image + ".config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\nhostname: "+image+"\n", "\nhostname: "+hostname+"\n", 1)
	if ntp != "" {
		s = regexp.MustCompile(`(?m)^  servers: \[.*\]$`).ReplaceAllString(s, "  servers: ["+ntp+"]")
	}
	if !strings.Contains(s, "hostname: "+hostname+"\n") || (ntp != "" && !strings.Contains(s, "servers: ["+ntp+"]")) {
		t.Fatalf("recipes/%s.config.yaml: no hostname or time.servers line to replace", image)
	}
	return []byte(s)
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

var startedRE = regexp.MustCompile(`service time started \(pid (\d+)[;)]`)

// TestKilledServiceRestarts opens the rescue shell with the console
// password of the seeded node config (a wrong one first), kills a service
// with SIGKILL from it and sees PID 1 restart it and the service report
// ready again. Then it checks PID 1 locked GRUB with the same password:
// booted from the disk, GRUB asks for a user before it lets anyone edit
// an entry.
func TestKilledServiceRestarts(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	kernel, _ := m.Path(dir, image.KindKernel)
	initrd, _ := m.Path(dir, image.KindInitramfs)
	d := copyRaw(t, raw)
	const password = "rescue me now"
	hash, err := passwd.Hash(password)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(seededConfig(t, "kvm-node", "rescue-a", "")) + "console:\n  password: " + hash + "\n"
	if err := lab.SeedDisk(d, map[string][]byte{"node.yaml": []byte(cfg)}); err != nil {
		t.Fatal(err)
	}
	vm := boot(t, qemu.Config{
		Disk: d, Net: true, Kernel: kernel, Initrd: initrd,
		Append: m.Cmdline + " tandem.slot=A tandem.rescue=1",
	})
	i := wait(t, vm, 0, "tandem: ready (slot A", bootLimit)
	s := wait(t, vm, 0, "service time started", stepLimit)
	pid := startedRE.FindStringSubmatch(vm.Line(s))[1]
	p := wait(t, vm, 0, "tandem rescue: console password", stepLimit)
	typeSlowly(t, vm, "not it\n")
	p = wait(t, vm, p, "tandem rescue: wrong password", stepLimit)
	if count(vm, "toggle key help") > 0 {
		t.Fatal("a shell started before the console password was given")
	}
	p = wait(t, vm, p, "tandem rescue: console password", stepLimit)
	typeSlowly(t, vm, password+"\n")
	wait(t, vm, p, "tandem rescue: root shell", stepLimit)
	// gosh queries the terminal when it starts; keys typed before its
	// prompt and key help show are taken as the answers.
	wait(t, vm, 0, "toggle key help", stepLimit)
	time.Sleep(time.Second)
	exited := "service time (pid " + pid + ") exited: killed by killed"
	j := -1
	const tries = 5 // a CI run on a busy host lost three in a row (2026-12-03)
	for try := 0; try < tries && j < 0; try++ {
		// Ctrl-C first clears whatever a lost earlier try left on the line;
		// the editor needs a moment after it before it takes keys again,
		// longer on a busy host.
		typeSlowly(t, vm, "\x03")
		time.Sleep(time.Duration(1+try) * time.Second)
		typeSlowly(t, vm, "kill -9 "+pid+"\n")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		j, _ = vm.WaitFor(ctx, i, exited)
		cancel()
	}
	if j < 0 {
		t.Fatalf("console: no %q after typing kill %d times", exited, tries)
	}
	k := wait(t, vm, j, "service time started (pid", stepLimit)
	wait(t, vm, k, "service time ready", stepLimit)
	powerOff(t, vm)

	b, err := disk.ReadBootFile(d, "/grub/password.cfg")
	if err != nil || !strings.Contains(string(b), "set superusers=\"root\"\npassword_pbkdf2 root "+hash+"\n") {
		t.Fatalf("/grub/password.cfg on the boot partition = %q, %v; want root's console password", b, err)
	}
	vm = boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	// Keys until GRUB's menu takes one: "e" edits the entry, which a
	// locked GRUB allows only its superuser.
	for n := 0; count(vm, "Enter username:") == 0; n++ {
		if count(vm, "tandem: init starting") > 0 || n > 1200 {
			t.Fatalf("GRUB booted without asking for a user (its menu took no \"e\", or is not locked); console:\n%s", strings.Join(vm.Lines(), "\n"))
		}
		if err := vm.Send("e"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlotB flips the environment to slot B on trial: GRUB boots B, PID 1
// reaches ready and marks B good.
func TestSlotB(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := copyRaw(t, raw)
	setEnv(t, d, func(e grubenv.Env) error { return e.TrySlot("B", 3) })
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
	setEnv(t, d, func(e grubenv.Env) error { return e.TrySlot("B", tries) })
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

// typeSlowly types s a key at a time: the shell's line editor, emulated
// at TCG speed, loses keys that arrive in one burst.
func typeSlowly(t *testing.T, vm *qemu.VM, s string) {
	t.Helper()
	for _, r := range s {
		if err := vm.Send(string(r)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func setEnv(t *testing.T, d string, f func(grubenv.Env) error) {
	t.Helper()
	env := readEnv(t, d)
	if err := f(env); err != nil {
		t.Fatal(err)
	}
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

// TestInitRevertsFailedSlot gives slot B a trial while perm holds a
// malformed settings file, so PID 1's boot fails after it has mounted the
// boot partition: PID 1 itself (not GRUB's countdown) switches back to
// slot A after B's first boot. Slot A, already good, meets the same broken
// file and stays up for rescue instead of rebooting in a loop.
func TestInitRevertsFailedSlot(t *testing.T) {
	dir, m := kvmNode(t)
	raw, _ := m.Path(dir, image.KindRaw)
	d := copyRaw(t, raw)
	writePermFile(t, d, "settings.yaml", "hostname: [not, a, string]\n")
	setEnv(t, d, func(e grubenv.Env) error { return e.TrySlot("B", 3) })
	vm := boot(t, qemu.Config{Disk: d, Firmware: qemu.BIOS, Net: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootLimit)
	defer cancel()
	if _, err := vm.WaitFor(ctx, 0, "init: slot A is marked good: staying up for rescue"); err != nil {
		t.Fatalf("console: %v", err)
	}
	if n := count(vm, "init: slot B failed: next boot uses slot A"); n != 1 {
		t.Errorf("PID 1 reverted slot B %d times, want once", n)
	}
	if n := count(vm, "Command line: BOOT_IMAGE=/slot-B/vmlinuz"); n != 1 {
		t.Errorf("slot B was booted %d times, want once (PID 1 reverts before GRUB's tries run out)", n)
	}
	vm.Kill()
	env := readEnv(t, d)
	if env[grubenv.VarSlot] != "A" || env[grubenv.VarFailed] != "B" || env[grubenv.VarTries] != "" {
		t.Errorf("grubenv after PID 1's revert = %v, want slot A, failed B, no tries", env)
	}
}

// writePermFile puts a file into the perm file system of a raw image with
// e2fsprogs' debugfs, on a copy of the partition.
func writePermFile(t *testing.T, raw, name, content string) {
	t.Helper()
	testenv.RequireTool(t, "debugfs")
	start, size := partition(t, raw, nodeimage.PartPerm)
	img, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	part, src := filepath.Join(tmp, "perm.img"), filepath.Join(tmp, name)
	testenv.WriteFile(t, part, img[start:start+size], 0o644)
	testenv.WriteFile(t, src, []byte(content), 0o644)
	if out, err := exec.Command("debugfs", "-w", "-R", "write "+src+" "+name, part).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(part)
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, start); err != nil {
		t.Fatal(err)
	}
}

// partition returns the byte offset and size of the named GPT partition.
func partition(t *testing.T, raw, name string) (int64, int64) {
	t.Helper()
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pt.(*gpt.Table).Partitions {
		if p.Name == name {
			return int64(p.Start) * 512, int64(p.End-p.Start+1) * 512
		}
	}
	t.Fatalf("%s has no partition %s", raw, name)
	return 0, 0
}
