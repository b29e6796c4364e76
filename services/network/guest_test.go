package network

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
)

// TestGuestBondVLAN needs bonding and 8021q, which the build machines'
// kernel lacks, so it boots Debian's kernel under QEMU (TCG) with this
// test binary as /init (see guestinit_test.go). Loading bonding creates
// an empty balance-rr bond0, which Apply turns active-backup. An active-backup bond
// keeps traffic flowing when its active link's cable is pulled (QEMU's
// set_link on both ends), and a VLAN on the bond carries traffic. The
// guest's NICs are joined only by QEMU hubs: nothing reaches the host.
func TestGuestBondVLAN(t *testing.T) {
	testenv.RequireTool(t, "qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "go")
	kernelDir := debianKernel(t)
	work := t.TempDir()
	initrd := buildInitramfs(t, kernelDir, work)
	vmlinuz, _ := filepath.Glob(filepath.Join(kernelDir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		t.Fatalf("vmlinuz in %s: %v", kernelDir, vmlinuz)
	}

	monitor := filepath.Join(work, "monitor")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	args := []string{"-accel", "tcg", "-m", "512", "-smp", "1", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-monitor", "unix:" + monitor + ",server=on,wait=off",
		"-kernel", vmlinuz[0], "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init"}
	for i := range 4 {
		args = append(args, "-netdev", fmt.Sprintf("hubport,id=h%d,hubid=%d", i, i%2),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=h%d,id=nic%d,mac=52:54:00:80:00:0%d", i, i, []int{1, 2, 3, 4}[i]))
	}
	// nic0 (lan0) and nic2 (p0) share hub 0; nic1 (lan1) and nic3 (p1) hub 1.
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	var serial bytes.Buffer
	var res *guestResult
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		serial.WriteString(line + "\n")
		switch {
		case strings.Contains(line, guestMarkPull):
			t.Logf("guest up and bonded after %v; pulling lan0's cable", time.Since(start).Round(time.Second))
			pullCable(t, monitor, "nic0", "nic2")
		case strings.HasPrefix(line, guestMarkResult):
			res = new(guestResult)
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, guestMarkResult)), res); err != nil {
				t.Fatalf("guest result %q: %v", line, err)
			}
		}
	}
	cmd.Wait()
	if res == nil {
		t.Fatalf("no result from the guest (%v); serial:\n%s", ctx.Err(), serial.String())
	}
	t.Logf("guest finished after %v, failover took %s", time.Since(start).Round(time.Second), res.FailoverTook)
	if res.Error != "" {
		t.Fatalf("guest: %s\nserial:\n%s", res.Error, serial.String())
	}
	checkGuest(t, res)
}

func checkGuest(t *testing.T, res *guestResult) {
	t.Helper()
	first := fmt.Sprint(res.FirstApply)
	for _, want := range []string{"bond0: mode balance-rr -> active-backup", "bond0: primary lan0", "bond0: member lan0", "bond0: member lan1",
		"vlan42: created (VLAN 42 on bond0)", "vlan42: mtu 1500 -> 1400", "bond0: address 10.80.0.2/24", "vlan42: address 10.81.0.2/24"} {
		if !strings.Contains(first, want) {
			t.Errorf("first Apply in the guest = %v, want %q", res.FirstApply, want)
		}
	}
	if len(res.SecondApply) != 0 {
		t.Errorf("second Apply in the guest = %v, want no changes", res.SecondApply)
	}
	state := func(sts []LinkState, name string) LinkState {
		for _, s := range sts {
			if s.Name == name {
				return s
			}
		}
		return LinkState{}
	}
	if l0, l1 := state(res.Before, "lan0"), state(res.Before, "lan1"); l0.Master != "bond0" || l0.BondState != "active" || l1.BondState != "backup" {
		t.Errorf("before the pull: lan0 %+v, lan1 %+v; want lan0 active and lan1 backup in bond0", l0, l1)
	}
	if l0, l1 := state(res.After, "lan0"), state(res.After, "lan1"); l1.BondState != "active" || l0.Oper == "up" {
		t.Errorf("after the pull: lan0 %+v, lan1 %+v; want lan0 down and lan1 active", l0, l1)
	}
	if v := state(res.Before, "vlan42"); v.Kind != "vlan" || v.MTU != 1400 || strings.Join(v.Addresses, " ") != "10.81.0.2/24" {
		t.Errorf("vlan42 = %+v, want a vlan, mtu 1400, 10.81.0.2/24", v)
	}
	if res.ClockStepped < time.Hour-5*time.Second || res.ClockStepped > time.Hour+5*time.Second {
		t.Errorf("guest wall clock moved by %v after SystemClock.Step(1h), want ~1h", res.ClockStepped)
	}
	if res.SlewPending <= 0 || res.SlewPending > 200*time.Millisecond {
		t.Errorf("kernel offset after SystemClock.Slew(200ms) = %v, want in (0, 200ms]", res.SlewPending)
	}
	// About 100 echoes go out on each in 2s (fewer on a loaded machine, as
	// the guest's ticker drops ticks); traffic flows if replies come back.
	for _, c := range []struct {
		name string
		n    int
	}{{"bond before", res.BondBefore}, {"vlan before", res.VLANBefore}, {"bond after", res.BondAfter}, {"vlan after", res.VLANAfter}} {
		if c.n < 10 {
			t.Errorf("echo replies %s the cable pull = %d in 2s, want >= 10", c.name, c.n)
		}
	}
}

// pullCable sets the named NICs' links down through the QEMU monitor.
func pullCable(t *testing.T, monitor string, nics ...string) {
	c, err := net.Dial("unix", monitor)
	if err != nil {
		t.Errorf("monitor: %v", err)
		return
	}
	defer c.Close()
	for _, n := range nics {
		fmt.Fprintf(c, "set_link %s off\n", n)
	}
	time.Sleep(200 * time.Millisecond)
}

// guestCache is where the kernel package is kept between runs.
func guestCache(t *testing.T) string {
	dir := os.Getenv("TANDEM_GUEST_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(base, "tandem", "services-guest")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// debianKernel downloads Debian's current kernel package with the
// machine's apt configuration (once) and returns where it is unpacked.
func debianKernel(t *testing.T) string {
	cache := guestCache(t)
	pkg := kernelPackage(t)
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return dir
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = cache
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get download %s: %v\n%s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	}
	if len(debs) == 0 {
		t.Fatalf("no %s .deb in %s after download", pkg, cache)
	}
	os.RemoveAll(dir)
	if out, err := exec.Command("dpkg-deb", "-x", debs[len(debs)-1], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644)
	return dir
}

// kernelPackage is the versioned package linux-image-amd64 depends on.
func kernelPackage(t *testing.T) string {
	find := func() string {
		out, _ := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				return f[1]
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	exec.Command("apt-get", "update", "-qq").Run()
	if p := find(); p != "" {
		return p
	}
	testenv.Unavailable(t, "apt-cache finds no linux-image-amd64")
	return ""
}

// guestModules are what the guest loads, dependencies resolved from the
// modules' own .modinfo (the package ships no modules.dep).
var guestModuleNames = []string{"virtio_pci", "virtio_net", "bonding", "8021q"}

func buildInitramfs(t *testing.T, kernelDir, work string) string {
	initBin := filepath.Join(work, "init")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "test", "-c", "-o", initBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v\n%s", err, out)
	}
	mods, err := resolveModules(kernelDir, guestModuleNames)
	if err != nil {
		t.Fatal(err)
	}
	var w cpioWriter
	for _, d := range []string{"dev", "proc", "sys", "tmp", "modules"} {
		w.dir(d)
	}
	w.node("dev/console", 0o20600, 5, 1)
	data, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	w.file("init", 0o755, data)
	var order []string
	for _, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		w.file("modules/"+filepath.Base(m), 0o644, b)
		order = append(order, filepath.Base(m))
	}
	w.file("modules/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	path := filepath.Join(work, "initramfs.cpio")
	if err := os.WriteFile(path, w.finish(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// resolveModules returns the .ko paths of names and their dependencies,
// dependencies first.
func resolveModules(kernelDir string, names []string) ([]string, error) {
	byName := map[string]string{}
	root, _ := filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "kernel"))
	if len(root) != 1 {
		return nil, fmt.Errorf("modules in %s: %v", kernelDir, root)
	}
	filepath.WalkDir(root[0], func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			byName[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = p
		}
		return nil
	})
	var out []string
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(n string) error {
		if seen[n] {
			return nil
		}
		seen[n] = true
		p, ok := byName[n]
		if !ok {
			return fmt.Errorf("module %s not in %s", n, root[0])
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		out = append(out, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s: no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// cpioWriter writes the newc format the kernel unpacks.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) entry(name string, mode, major, minor int, data []byte) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	w.buf.WriteString(name + "\x00")
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string)                      { w.entry(name, 0o40755, 0, 0, nil) }
func (w *cpioWriter) file(name string, perm int, b []byte) { w.entry(name, 0o100000|perm, 0, 0, b) }
func (w *cpioWriter) node(name string, mode, major, minor int) {
	w.entry(name, mode, major, minor, nil)
}

func (w *cpioWriter) finish() []byte {
	w.entry("TRAILER!!!", 0, 0, 0, nil)
	return w.buf.Bytes()
}
