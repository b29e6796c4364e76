// Package vmtest boots Debian's kernel under QEMU (TCG) with a test binary
// as /init, for tests that need a kernel feature the build machines' kernel
// lacks (bonding, VLANs, a watchdog device). The host side takes the kernel
// package the node images ship (the kvm-node recipe's suite, through the
// image builder's Debian fetcher and cache), builds a tiny initramfs holding
// the package's test binary (static) and the modules it needs, and boots it
// with lab/qemu, the serial console read line by line. The guest side
// (Init, PowerOff) runs in that test binary when it is PID 1.
package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"tandem/image"
	"tandem/image/debian"
	"tandem/image/recipe"
)

// Kernel is Debian's kernel package, unpacked.
type Kernel struct {
	// Dir is where the package is unpacked (boot/, lib/modules/).
	Dir string
	// Vmlinuz is the kernel image in Dir.
	Vmlinuz string
}

// Tools are the programs the host side runs.
var Tools = []string{"qemu-system-x86_64", "go"}

// DebianKernel returns the kernel package the kvm-node images ship
// (linux-image-amd64's versioned dependency), fetched once into the image
// builder's cache and unpacked. It needs no root.
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	a := archive(t)
	meta, err := a.Package("linux-image-amd64")
	if err != nil {
		t.Fatal(err)
	}
	var versioned string
	for _, d := range meta.Depends {
		if strings.HasPrefix(d, "linux-image-") {
			versioned = d
			break
		}
	}
	if versioned == "" {
		t.Fatalf("linux-image-amd64 %s depends on no linux-image-* package", meta.Version)
	}
	dir := DebianPackage(t, versioned)
	vmlinuz, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		t.Fatalf("vmlinuz in %s: %v", dir, vmlinuz)
	}
	return Kernel{Dir: dir, Vmlinuz: vmlinuz[0]}
}

// DebianPackage fetches package pkg of the same suite once into the cache
// and returns the directory it is unpacked in, for a test that puts its
// programs (drbd-utils, ...) into a guest's initramfs.
func DebianPackage(t testing.TB, pkg string) string {
	t.Helper()
	a := archive(t)
	p, err := a.Package(pkg)
	if err != nil {
		t.Fatal(err)
	}
	deb, err := a.Fetch(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := a.Unpacked(p, deb)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// openArchive opens the kvm-node recipe's Debian suite, once per test binary.
var openArchive = sync.OnceValues(func() (*debian.Archive, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	root, err := image.FindModuleDir(wd)
	if err != nil {
		return nil, err
	}
	r, err := recipe.Load(filepath.Join(root, "recipes", "kvm-node.yaml"), "")
	if err != nil {
		return nil, err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "vmtest: "+f+"\n", a...) }
	return image.OpenArchive(context.Background(), r.Debian, image.DefaultCacheDir(), image.DefaultIndexMaxAge, logf)
})

func archive(t testing.TB) *debian.Archive {
	t.Helper()
	a, err := openArchive()
	if err != nil {
		t.Fatalf("debian archive for guests: %v", err)
	}
	return a
}
