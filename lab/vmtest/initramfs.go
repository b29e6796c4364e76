package vmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"tandem/image/initramfs"
	"tandem/image/kmod"
)

// Initramfs builds the test binary of the package in the current
// directory and writes an initramfs with it as /init and the named
// modules, with their dependencies (InitramfsTree). It returns the
// initramfs's path, in a test temp dir.
func Initramfs(t testing.TB, k Kernel, modules ...string) string {
	t.Helper()
	return WriteInitramfs(t, InitramfsTree(t, k, modules...))
}

// InitramfsTree is Initramfs's content, for a test that adds more (Debian
// programs and their libraries): the package's test binary (static,
// CGO_ENABLED=0) as /init and the named modules with their dependencies
// in /modules, listed in load order in /modules/order for Init. The
// dependencies come from the modules' .modinfo (image/kmod, as the image
// builder resolves them).
func InitramfsTree(t testing.TB, k Kernel, modules ...string) *initramfs.Tree {
	t.Helper()
	initBin := filepath.Join(t.TempDir(), "init")
	// go test puts its own toolchain first in PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build guest init: %v", err)
	}
	build := exec.Command(gobin, "test", "-c", "-o", initBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v\n%s", err, out)
	}
	tree := initramfs.NewTree()
	if err := tree.AddHost("init", initBin); err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob(filepath.Join(k.Dir, "lib", "modules", "*"))
	if len(dirs) != 1 {
		t.Fatalf("modules in %s: %v", k.Dir, dirs)
	}
	mods, err := kmod.Open(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	order, _, err := mods.Closure(modules)
	if err != nil {
		t.Fatalf("guest modules: %v", err)
	}
	var names []string
	for _, rel := range order {
		name := path.Base(rel)
		if err := tree.AddHost("modules/"+name, filepath.Join(mods.Dir, rel)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	tree.AddData("modules/order", []byte(strings.Join(names, "\n")+"\n"), 0o644)
	return tree
}

// WriteInitramfs writes tree as an uncompressed newc archive into a test
// temp dir and returns its path.
func WriteInitramfs(t testing.TB, tree *initramfs.Tree) string {
	t.Helper()
	var b bytes.Buffer
	if err := tree.WriteCPIO(&b); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
