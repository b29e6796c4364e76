// Package netns runs code inside a named network namespace
// (/run/netns/NAME, as `ip netns add` makes them) without moving the rest
// of the process there.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered namespace name, and returns
// fn's error.
//
// setns(CLONE_NEWNET) changes the namespace of the calling thread only.
// Do's goroutine locks itself to its thread, enters name, runs fn, and
// enters the thread's own namespace again before it unlocks, so the
// scheduler only ever gets the thread back in the namespace it had. If
// going back fails the goroutine returns still locked, and the runtime
// ends the thread instead of reusing it.
//
// Why not always let the thread end: a thread's exit kills every child
// that was started from it with Pdeathsig (lab/qemu's QEMUs are), and
// the locked goroutine runs on whatever thread the scheduler gave it,
// possibly one that started a QEMU earlier.
//
// A socket keeps the namespace it was created in, whatever thread uses it
// later, so a listener or connection that fn opens stays in name after Do
// returns and can be used from any goroutine. fn must create its sockets
// itself, not in goroutines it starts (those run on other threads, in the
// process's namespace).
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := enter(name)
		if err != nil {
			runtime.UnlockOSThread() // still in its own namespace
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
			// Exit locked: the thread ends with us.
			ferr = errors.Join(ferr, fmt.Errorf("netns %s: return to the thread's namespace: %w", name, err))
		} else {
			runtime.UnlockOSThread()
		}
		back.Close()
		errc <- ferr
	}()
	return <-errc
}

// enter moves the calling thread into namespace name and returns its
// previous namespace, to go back to. On error the thread is where it was.
func enter(name string) (back *os.File, err error) {
	back, err = os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, fmt.Errorf("netns of this thread: %w", err)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		back.Close()
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		back.Close()
		return nil, fmt.Errorf("enter netns %s: %w", name, err)
	}
	return back, nil
}
