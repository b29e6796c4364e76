// Package vmtest boots Debian's kernel under QEMU (TCG) with a test binary
// as /init, for tests that need a kernel feature the build machines' kernel
// lacks (bonding, VLANs, a watchdog device). The host side fetches and
// caches the kernel package, builds a tiny initramfs holding the package's
// test binary (static) and the modules it needs, and starts QEMU with the
// serial console captured line by line. The guest side (Init, PowerOff)
// runs in that test binary when it is PID 1.
package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

// Kernel is Debian's kernel package, unpacked.
type Kernel struct {
	// Dir is where the package is unpacked (boot/, lib/modules/).
	Dir string
	// Vmlinuz is the kernel image in Dir.
	Vmlinuz string
}

// Tools are the programs the host side runs.
var Tools = []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "go"}

// DebianKernel downloads Debian's current kernel package with the
// machine's apt configuration (once, into the cache) and returns it
// unpacked. It needs no root.
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	cache := cacheDir(t)
	pkg := kernelPackage(t)
	dir := unpackPackage(t, cache, pkg)
	vmlinuz, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		t.Fatalf("vmlinuz in %s: %v", dir, vmlinuz)
	}
	return Kernel{Dir: dir, Vmlinuz: vmlinuz[0]}
}

// DebianPackage downloads Debian package pkg (the machine's apt
// configuration picks the version) once into the cache and returns the
// directory it is unpacked in, for a test that puts its programs (drbd-utils,
// ...) into a guest's initramfs.
func DebianPackage(t testing.TB, pkg string) string {
	t.Helper()
	return unpackPackage(t, cacheDir(t), pkg)
}

// unpackPackage downloads pkg into cache unless a .deb of it is there and
// unpacks it into cache/pkg unless that is done.
func unpackPackage(t testing.TB, cache, pkg string) string {
	t.Helper()
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
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[len(debs)-1], err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cacheDir is where the kernel package is kept between runs:
// $TANDEM_GUEST_CACHE, or tandem/services-guest in the user's cache.
func cacheDir(t testing.TB) string {
	t.Helper()
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

// kernelPackage is the versioned package linux-image-amd64 depends on.
func kernelPackage(t testing.TB) string {
	t.Helper()
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
	_ = exec.Command("apt-get", "update", "-qq").Run() // the second look says whether it helped
	if p := find(); p != "" {
		return p
	}
	testenv.Unavailable(t, "apt-cache finds no linux-image-amd64")
	return ""
}
