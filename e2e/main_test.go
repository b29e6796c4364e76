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
	"tandem/internal/qemu"
	"tandem/internal/testenv"
)

var (
	buildOnce sync.Once
	built     string // output directory of the kvm-node build
	buildErr  error
)

// kvmNode builds recipes/kvm-node.yaml once for all tests of the run.
func kvmNode(t *testing.T) (dir string, m *image.Manifest) {
	t.Helper()
	testenv.RequireTool(t, "qemu-system-x86_64", "qemu-img", "grub-mkimage", "mke2fs")
	buildOnce.Do(func() {
		built, buildErr = os.MkdirTemp("", "tandem-e2e-")
		if buildErr != nil {
			return
		}
		r, err := recipe.Load("../recipes/kvm-node.yaml", "")
		if err != nil {
			buildErr = err
			return
		}
		_, buildErr = image.Build(context.Background(), r, image.Options{
			OutDir: built, Epoch: 1700000000,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "build: "+f+"\n", a...) },
		})
	})
	if buildErr != nil {
		t.Fatalf("build kvm-node: %v", buildErr)
	}
	m, err := image.ReadManifest(built)
	if err != nil {
		t.Fatal(err)
	}
	return built, m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(built)
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
			out.WriteAt(buf[:n], off)
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
