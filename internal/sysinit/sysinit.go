// Package sysinit is what tandem's two PID 1s share, the node's
// (init/pid1) and a container's (internal/container): the steps that bring
// the system up, run in a fixed order, and the reaping of every exited
// child.
package sysinit

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Step is one stage of bringing a system up.
type Step struct {
	Name string
	// Optional steps log their failure and the rest go on.
	Optional bool
	Do       func(ctx context.Context) error
}

func (s Step) String() string { return s.Name }

// Run runs steps in order and logs each one's outcome; the first required
// step that fails stops the run, and its error (named) is returned.
func Run(ctx context.Context, steps []Step, logf func(format string, args ...any)) error {
	for _, s := range steps {
		start := time.Now()
		err := s.Do(ctx)
		switch {
		case err == nil:
			logf("%s: ok (%s)", s, time.Since(start).Round(time.Millisecond))
		case s.Optional:
			logf("%s: %v (going on)", s, err)
		default:
			logf("%s: FAILED: %v", s, err)
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// Reap collects every child that has exited, without blocking, and hands
// each to exited. A PID 1 calls it on every SIGCHLD: the kernel re-parents
// orphans to it, and nobody else waits for them.
func Reap(exited func(pid int, ws syscall.WaitStatus)) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
		exited(pid, ws)
	}
}
