package initramfs

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// libDirs are where Debian's multiarch packages put amd64 shared
// libraries; Debian's dynamic loader searches them without ld.so.cache.
var libDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib"}

// Libraries finds the shared libraries that the ELF programs in t need
// (DT_NEEDED, transitively, plus the program interpreter) in the unpacked
// package roots and adds them to t. A library found nowhere is an error
// that names the program.
func (t *Tree) Libraries(roots []string) error {
	var queue []string
	for name, r := range t.recs {
		if r.Mode&0o170000 == 0o100000 && r.Mode&0o111 != 0 || strings.Contains(name, ".so") {
			queue = append(queue, name)
		}
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		needed, interp, err := t.elfDeps(name)
		if err != nil || (needed == nil && interp == "") {
			continue // not an ELF file (a script, a module, data)
		}
		if interp != "" {
			if err := t.addLib(roots, strings.TrimPrefix(interp, "/"), name); err != nil {
				return err
			}
			queue = append(queue, strings.TrimPrefix(interp, "/"))
		}
		for _, lib := range needed {
			p, err := t.findLib(roots, lib, name)
			if err != nil {
				return err
			}
			queue = append(queue, p)
		}
	}
	return nil
}

func (t *Tree) elfDeps(name string) ([]string, string, error) {
	r := t.recs[name]
	if r.ReaderAt == nil || r.Mode&0o170000 != 0o100000 {
		return nil, "", nil
	}
	f, err := elf.NewFile(r.ReaderAt)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	if f.Type == elf.ET_REL {
		return nil, "", nil // kernel module
	}
	needed, _ := f.ImportedLibraries()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, "", fmt.Errorf("%s: interpreter: %w", name, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	return needed, interp, nil
}

// findLib adds library lib from the first root and directory that has it
// and returns its archive path.
func (t *Tree) findLib(roots []string, lib, neededBy string) (string, error) {
	for _, dir := range libDirs {
		p := path.Join(dir, lib)
		if t.Has(p) {
			return p, nil
		}
		for _, root := range roots {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				return p, t.addLib(roots, p, neededBy)
			}
		}
	}
	return "", fmt.Errorf("%s needs %s, which none of the recipe's packages or their library dependencies ship", neededBy, lib)
}

// addLib adds p, following symlinks within the package roots.
func (t *Tree) addLib(roots []string, p, neededBy string) error {
	for hops := 0; hops < 10; hops++ {
		if t.Has(p) && t.recs[p].Mode&0o170000 != 0o120000 {
			return nil
		}
		src := ""
		for _, root := range roots {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				src = filepath.Join(root, p)
				break
			}
		}
		if src == "" {
			return fmt.Errorf("%s needs /%s, which no package ships", neededBy, p)
		}
		if err := t.AddHost(p, src); err != nil {
			return err
		}
		target, err := os.Readlink(src)
		if err != nil {
			return nil // a regular file: done
		}
		if path.IsAbs(target) {
			p = strings.TrimPrefix(target, "/")
		} else {
			p = path.Join(path.Dir(p), target)
		}
	}
	return fmt.Errorf("%s: symlink loop at /%s", neededBy, p)
}
