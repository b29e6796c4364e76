package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/image"
	"tandem/image/recipe"
	"tandem/internal/testenv"
	"tandem/lab/qemu"
)

var (
	buildMu   sync.Mutex
	builtRoot string               // one directory per recipe built in this run
	builds    = map[string]error{} // recipe name -> its build's error
)

// kvmNode builds recipes/kvm-node.yaml once for all tests of the run.
func kvmNode(t *testing.T) (dir string, m *image.Manifest) {
	t.Helper()
	return build(t, "kvm-node")
}

// build builds recipes/NAME.yaml once for all tests of the run into
// DIR/NAME, DIR being the same for every recipe (see images), and returns
// that directory and its manifest.
func build(t testing.TB, name string) (dir string, m *image.Manifest) {
	t.Helper()
	testenv.RequireTool(t, "qemu-system-x86_64", "qemu-img", "grub-mkimage", "mke2fs")
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtRoot == "" {
		d, err := os.MkdirTemp("", "tandem-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		builtRoot = d
	}
	dir = filepath.Join(builtRoot, name)
	err, done := builds[name]
	if !done {
		err = buildRecipe(name, dir)
		builds[name] = err
	}
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	m, err = image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// images returns the directory holding the builds made so far, one
// subdirectory per recipe name.
func images() string {
	buildMu.Lock()
	defer buildMu.Unlock()
	return builtRoot
}

func buildRecipe(name, dir string) error {
	r, err := recipe.Load("../recipes/"+name+".yaml", "")
	if err != nil {
		return err
	}
	_, err = image.Build(context.Background(), r, image.Options{
		OutDir: dir, Epoch: 1700000000,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "build %s: "+f+"\n", append([]any{name}, a...)...) },
	})
	return err
}

func TestMain(m *testing.M) {
	testenv.LockMachine("e2e")
	code := m.Run()
	if builtRoot != "" {
		os.RemoveAll(builtRoot)
	}
	os.Exit(code)
}

// boot starts a VM that logs its console to the test log and is killed
// when the test ends.
func boot(t *testing.T, c qemu.Config) *qemu.VM {
	t.Helper()
	c.Dir = t.TempDir()
	c.Console = &testWriter{t: t}
	vm, err := qemu.Start(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm
}

// bootFailed is what PID 1 prints when a required boot step fails.
const bootFailed = "tandem: boot failed"

// wait waits for a console line containing want, failing the test at once
// if the boot fails, and after limit (a bound against hangs, not a
// performance assertion).
func wait(t *testing.T, vm *qemu.VM, from int, want string, limit time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	i, err := vm.WaitFor(ctx, from, want, bootFailed)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	if line := vm.Line(i); !strings.Contains(line, want) {
		t.Fatalf("console: %s (while waiting for %q)", line, want)
	}
	return i
}

// overlay returns a writable qcow2 over a built artifact, sized sizeMiB.
func overlay(t *testing.T, base string, sizeMiB int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := qemu.Overlay(p, base, sizeMiB); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyRaw copies a raw image, keeping it sparse.
func copyRaw(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "disk.raw")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	st, _ := in.Stat()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < st.Size(); off += int64(len(buf)) {
		n, err := in.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if strings.Trim(string(buf[:n]), "\x00") != "" {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		t.Fatal(err)
	}
	return dst
}

// count counts console lines containing s.
func count(vm *qemu.VM, s string) int {
	n := 0
	for _, l := range vm.Lines() {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("console: %s", strings.TrimRight(string(p), "\r\n"))
	return len(p), nil
}
