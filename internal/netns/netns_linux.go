// Package netns runs code inside a named network namespace
// (/run/netns/NAME, as `ip netns add` makes them) without moving the rest
// of the process there.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a new OS thread that has entered namespace name, and
// returns fn's error.
//
// setns(CLONE_NEWNET) changes the namespace of the calling thread only.
// Do's goroutine locks itself to its thread and never unlocks it: when the
// goroutine returns, the runtime ends the thread instead of handing it
// back to the scheduler's pool in the wrong namespace, so no other
// goroutine ever runs there. A socket keeps the namespace it was created
// in whatever thread uses it later, so a listener or connection that fn
// opens stays in name after Do returns and can be used from any
// goroutine. fn must create its sockets itself, not in goroutines it
// starts (those run on other threads, in the process's namespace).
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
