package vmtest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Initramfs builds the test binary of the package in the current
// directory (static, CGO_ENABLED=0) and writes an initramfs with it as
// /init and the named modules, with their dependencies, in /modules for
// Init to load. It returns the initramfs's path, in a test temp dir.
func Initramfs(t testing.TB, k Kernel, modules ...string) string {
	t.Helper()
	work := t.TempDir()
	initBin := filepath.Join(work, "init")
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
	mods, err := resolveModules(k.Dir, modules)
	if err != nil {
		t.Fatal(err)
	}
	var w cpioWriter
	for _, d := range []string{"dev", "proc", "sys", "tmp", "modules"} {
		w.dir(d)
	}
	w.node("dev/console", 0o20600, 5, 1)
	if err := w.copy("init", 0o755, initBin); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range mods {
		if err := w.copy("modules/"+filepath.Base(m), 0o644, m); err != nil {
			t.Fatal(err)
		}
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
// dependencies first, read from the modules' own .modinfo (the package
// ships no modules.dep).
func resolveModules(kernelDir string, names []string) ([]string, error) {
	root, _ := filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "kernel"))
	if len(root) != 1 {
		return nil, fmt.Errorf("modules in %s: %v", kernelDir, root)
	}
	byName := map[string]string{}
	err := filepath.WalkDir(root[0], func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			byName[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modules in %s: %w", root[0], err)
	}
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

// moduleDepends reads the depends= field of a module's .modinfo.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s: no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
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

// copy adds the host file src as name.
func (w *cpioWriter) copy(name string, perm int, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	w.file(name, perm, b)
	return nil
}

func (w *cpioWriter) finish() []byte {
	w.entry("TRAILER!!!", 0, 0, 0, nil)
	return w.buf.Bytes()
}
