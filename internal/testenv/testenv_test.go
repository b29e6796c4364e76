package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLockMachine: once a package holds the machine lock, another holder
// (a second open file, as another process has) cannot take it.
func TestLockMachine(t *testing.T) {
	old := machineLockPath
	machineLockPath = filepath.Join(t.TempDir(), "machine.lock")
	defer func() { machineLockPath = old }()
	LockMachine("testenv")
	if machineLock == nil {
		t.Fatal("LockMachine did not take the lock")
	}
	defer func() { machineLock.Close(); machineLock = nil }()
	f, err := os.Open(machineLockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Errorf("second flock of a held machine lock = %v, want EWOULDBLOCK", err)
	}
}
