// Package testenv decides what a test does when the machine lacks something
// it needs (root, a tool, a kernel feature): in CI (CI=true) the test fails,
// so a missing dependency can never pass as a skip; elsewhere it skips with
// the reason.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable fails the test in CI and skips it elsewhere, with reason.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required in CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot stops the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// RequireTool stops the test unless every named program is on PATH, and
// returns nothing: callers run the tools by name.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Unavailable(t, "needs "+n+" on PATH (make deps installs it)")
		}
	}
}

// LockMachine serialises the test packages that load the whole machine
// (QEMU guests under TCG, clusters of daemons in namespaces): it takes a
// lock shared by every process on the machine and holds it until this
// process exits. `go test ./...` runs two packages at once; two such
// packages side by side starved each other's guests on a two-core machine
// until leases expired and watchdogs fired.
//
// It is called from TestMain, before m.Run starts the test binary's own
// -timeout clock, and says on stderr when it has to wait and for how long.
func LockMachine(pkg string) {
	path := machineLockPath
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: machine lock %s: %v (running without it)\n", pkg, path, err)
		return
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		machineLock = f
		return
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "%s: waiting for the machine lock %s (another package's QEMU or cluster tests run)\n", pkg, path)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		fmt.Fprintf(os.Stderr, "%s: machine lock %s: %v (running without it)\n", pkg, path, err)
		return
	}
	fmt.Fprintf(os.Stderr, "%s: got the machine lock after %s\n", pkg, time.Since(start).Round(time.Second))
	machineLock = f
}

// machineLockPath is the lock every package shares.
var machineLockPath = filepath.Join(os.TempDir(), "tandem-machine.lock")

// machineLock keeps the lock's file open (and so the lock held) for the
// life of the process.
var machineLock *os.File

// WriteFile writes a test's fixture, creating its directory, and stops
// the test if that fails.
func WriteFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	MkdirAll(t, filepath.Dir(path))
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// MkdirAll makes a test's directory and stops the test if that fails.
func MkdirAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
