package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"tandem/internal/testenv"
)

func threadNetns() (string, error) { return os.Readlink("/proc/thread-self/ns/net") }

// TestDoLeavesNoThreadBehind runs fn in a new namespace, then checks that
// the threads it ran on still exist and that no goroutine scheduled
// afterwards runs in the namespace: Do's threads went back to their own.
func TestDoLeavesNoThreadBehind(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	ns := fmt.Sprintf("tandem-netns-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	var tids []int
	for range 20 {
		if err := Do(ns, func() (err error) {
			tids = append(tids, unix.Gettid())
			inside, err = threadNetns()
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if inside == host {
		t.Fatalf("Do: fn ran in %s, the process's namespace, want %s's", inside, ns)
	}
	// The threads live on: a thread's exit would kill the children it
	// started with Pdeathsig (the lab's QEMUs).
	for _, tid := range tids {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); err != nil {
			t.Errorf("thread %d that ran a Do has ended: %v", tid, err)
		}
	}
	// Goroutines locked to threads now: none may have been given a
	// thread Do left in ns.
	errc := make(chan error, 20)
	for range 20 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			got, err := threadNetns()
			if err == nil && got != host {
				err = fmt.Errorf("a goroutine after Do runs in %s, want the process's %s", got, host)
			}
			errc <- err
		}()
	}
	for range 20 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if err := Do("tandem-no-such-netns", func() error { return nil }); err == nil {
		t.Error("Do(missing namespace) = nil, want an error")
	}
}
