// Package supervise runs a node's services for PID 1: it starts them in
// order, hears their sd_notify messages (READY=1, WATCHDOG=1, STATUS=) on a
// socket per service, restarts them with back-off when they exit or miss a
// watchdog ping, and stops them in reverse order. Exit statuses come from
// the caller's reaper, because PID 1 must reap every child, its own
// services included.
package supervise

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"tandem/internal/confine"
)

// Spec is one service to run.
type Spec struct {
	Name string
	Path string
	Args []string
	Env  []string
	// Notify: the service sends READY=1; otherwise it is ready once started.
	Notify bool
	// Watchdog, if set, is the ping interval the service must keep
	// (WATCHDOG_USEC is set for it); a service that misses it is killed.
	Watchdog time.Duration
	// Console runs the service on the console as its controlling terminal
	// (the rescue shell).
	Console bool
	// Confine, if set, runs the service as a user with only some
	// capabilities; nil runs it as root with all of them.
	Confine *Confinement
}

// Confinement is what a confined service runs as. It starts as UID, GID
// and Groups, holds exactly Caps (as ambient capabilities, so they
// survive the exec into a program that has no file capabilities), has a
// bounding set of Caps only, and no_new_privs: no exec, of a
// set-user-ID program or one with file capabilities, gives it more.
// Its notify socket is its own (owner UID) so it can send to it.
type Confinement struct {
	UID, GID uint32
	Groups   []uint32
	// Caps are unix.CAP_* values.
	Caps []uintptr
}

// String is the confinement as the log shows it.
func (c *Confinement) String() string {
	return fmt.Sprintf("uid %d, gid %d, groups %v, capabilities %s", c.UID, c.GID, c.Groups, confine.Names(confine.Limits{Keep: c.Caps}.Mask()))
}

// State is a service's state as status reports it.
type State struct {
	Name     string
	PID      int
	Ready    bool
	Status   string
	Restarts int
	Stopped  bool // exited with service.NoRestart (internal/service), or the supervisor is stopping
}

// Options tune restarts; zero values take the defaults.
type Options struct {
	// NotifyDir holds the services' notify sockets.
	NotifyDir string
	// MinBackoff and MaxBackoff bound the delay before a restart; it
	// doubles on each quick exit and resets after StableAfter of uptime.
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// StopTimeout is how long a service gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// Logf logs what the supervisor does, naming the service.
	Logf func(format string, args ...any)
	// Output is where services' stdout and stderr go (the console).
	Output *os.File
}

func (o *Options) defaults() {
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.StableAfter == 0 {
		o.StableAfter = time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Supervisor runs a set of services.
type Supervisor struct {
	opt      Options
	mu       sync.Mutex
	svcs     []*child
	byPID    map[int]*child
	stopping bool
	changed  chan struct{} // closed and replaced on every state change
}

// New returns a supervisor for specs; nothing runs until Start.
func New(specs []Spec, opt Options) (*Supervisor, error) {
	opt.defaults()
	if err := os.MkdirAll(opt.NotifyDir, 0o755); err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	s := &Supervisor{opt: opt, byPID: map[int]*child{}, changed: make(chan struct{})}
	for _, sp := range specs {
		s.svcs = append(s.svcs, &child{spec: sp, sup: s, backoff: opt.MinBackoff})
	}
	return s, nil
}

// Start opens each service's notify socket and starts them in order.
func (s *Supervisor) Start(ctx context.Context) error {
	for _, sv := range s.svcs {
		sock := filepath.Join(s.opt.NotifyDir, sv.spec.Name+".sock")
		conn, err := listenNotify(sock, sv.spec.Confine)
		if err != nil {
			return fmt.Errorf("service %s: notify socket: %w", sv.spec.Name, err)
		}
		sv.sock = sock
		go sv.readNotify(ctx, conn)
		s.mu.Lock()
		sv.startLocked()
		s.mu.Unlock()
	}
	go s.watchdogLoop(ctx)
	return nil
}

// Exited tells the supervisor that pid exited with status ws; it returns
// false if pid is not one of its services. PID 1's reaper calls it.
func (s *Supervisor) Exited(pid int, ws syscall.WaitStatus) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.byPID[pid]
	if !ok {
		return false
	}
	delete(s.byPID, pid)
	sv.exitedLocked(ws)
	return true
}

// WaitReady blocks until every service is ready (or stopped for good), or
// ctx ends; it returns the names of the services not ready then.
func (s *Supervisor) WaitReady(ctx context.Context) []string {
	for {
		s.mu.Lock()
		var notReady []string
		for _, sv := range s.svcs {
			if !sv.ready && !sv.stopped {
				notReady = append(notReady, sv.spec.Name)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return notReady
		}
	}
}

// States returns every service's state, in start order.
func (s *Supervisor) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, len(s.svcs))
	for i, sv := range s.svcs {
		out[i] = State{Name: sv.spec.Name, PID: sv.pid, Ready: sv.ready, Status: sv.status, Restarts: sv.restarts, Stopped: sv.stopped}
	}
	return out
}

// Stop stops all services in reverse start order: SIGTERM, then SIGKILL
// after the stop timeout. It returns once all have exited (as reported
// through Exited) or the timeouts ran out.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	for i := len(s.svcs) - 1; i >= 0; i-- {
		s.svcs[i].stop(s.opt.StopTimeout)
	}
}

func (s *Supervisor) notifyChangeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Supervisor) watchdogLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, sv := range s.svcs {
				if d := sv.spec.Watchdog; d > 0 && sv.pid != 0 && now.Sub(sv.lastPing) > d {
					s.opt.Logf("service %s missed its watchdog (%s): killing", sv.spec.Name, d)
					syscall.Kill(sv.pid, syscall.SIGKILL)
					sv.lastPing = now
				}
			}
			s.mu.Unlock()
		}
	}
}
