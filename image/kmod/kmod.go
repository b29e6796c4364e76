// Package kmod picks kernel modules out of an unpacked Debian kernel
// package: the modules a hardware profile names plus everything they
// depend on, and the modules.dep that lets the node load them by name.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrUnknown is returned for a module the kernel neither builds in nor ships.
var ErrUnknown = errors.New("no such kernel module")

// Tree is the module directory of one kernel (lib/modules/VERSION).
type Tree struct {
	Dir     string
	paths   map[string]string // canonical name -> path relative to Dir
	builtin map[string]bool
}

// Open indexes the modules below dir by name.
func Open(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, paths: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(dir, p)
			t.paths[canon(strings.TrimSuffix(d.Name(), ".ko"))] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	for _, line := range strings.Fields(string(b)) {
		t.builtin[canon(strings.TrimSuffix(filepath.Base(line), ".ko"))] = true
	}
	return t, nil
}

// canon makes module names comparable: the kernel treats '-' and '_' alike.
func canon(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Closure returns the relative paths of the named modules and of all their
// dependencies, dependencies first, and a modules.dep for them. Built-in
// modules are accepted and need no file.
func (t *Tree) Closure(names []string) ([]string, []byte, error) {
	var order []string
	deps := map[string][]string{}
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = canon(name)
		if seen[name] || t.builtin[name] {
			return nil
		}
		rel, ok := t.paths[name]
		if !ok {
			return fmt.Errorf("%s (via %s): %w", name, strings.Join(chain, " -> "), ErrUnknown)
		}
		seen[name] = true
		ds, err := depends(filepath.Join(t.Dir, rel))
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
			if p, ok := t.paths[canon(d)]; ok {
				deps[rel] = append(deps[rel], p)
				deps[rel] = append(deps[rel], deps[p]...)
			}
		}
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, []string{"profile"}); err != nil {
			return nil, nil, err
		}
	}
	var dep bytes.Buffer
	sorted := append([]string(nil), order...)
	sort.Strings(sorted)
	for _, rel := range sorted {
		fmt.Fprintf(&dep, "%s:", rel)
		for _, d := range uniq(deps[rel]) {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteString("\n")
	}
	return order, dep.Bytes(), nil
}

// depends reads the "depends=" entry of a module's .modinfo section.
func depends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
