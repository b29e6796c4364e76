package supervise

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"tandem/internal/confine"
	"tandem/internal/service"
)

type child struct {
	spec     Spec
	sup      *Supervisor
	sock     string
	pid      int
	started  time.Time
	lastPing time.Time
	ready    bool
	stopped  bool
	status   string
	restarts int
	backoff  time.Duration
	exited   chan struct{} // closed when the current process exits
}

// startLocked starts the process; the supervisor's lock is held.
func (sv *child) startLocked() {
	s := sv.sup
	if s.stopping {
		return
	}
	env := append(os.Environ(), sv.spec.Env...)
	env = append(env, "NOTIFY_SOCKET="+sv.sock)
	if sv.spec.Watchdog > 0 {
		env = append(env, fmt.Sprintf("WATCHDOG_USEC=%d", sv.spec.Watchdog.Microseconds()))
	}
	out := s.opt.Output
	if out == nil {
		out, _ = os.Open(os.DevNull)
	}
	attr := &os.ProcAttr{Env: env, Files: []*os.File{nil, out, out}, Sys: &syscall.SysProcAttr{Setsid: true}}
	if sv.spec.Console {
		attr.Files[0] = out
		attr.Sys.Setctty = true
	}
	proc, err := startProcess(sv.spec, attr)
	if err != nil {
		s.opt.Logf("service %s: start: %v", sv.spec.Name, err)
		sv.scheduleRestartLocked()
		return
	}
	sv.pid = proc.Pid
	proc.Release() // the reaper, not os.Process, collects the exit status
	sv.started, sv.lastPing = time.Now(), time.Now()
	sv.ready = !sv.spec.Notify
	sv.exited = make(chan struct{})
	s.byPID[sv.pid] = sv
	if c := sv.spec.Confine; c != nil {
		s.opt.Logf("service %s started (pid %d; %s; no_new_privs)", sv.spec.Name, sv.pid, c)
	} else {
		s.opt.Logf("service %s started (pid %d)", sv.spec.Name, sv.pid)
	}
	if sv.ready {
		s.opt.Logf("service %s ready", sv.spec.Name)
	}
	s.notifyChangeLocked()
}

// startProcess starts the service's program with attr, confined as its
// Confinement says.
func startProcess(spec Spec, attr *os.ProcAttr) (*os.Process, error) {
	argv := append([]string{spec.Path}, spec.Args...)
	c := spec.Confine
	if c == nil {
		return os.StartProcess(spec.Path, argv, attr)
	}
	attr.Sys.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}
	attr.Sys.AmbientCaps = c.Caps
	return confine.StartProcess(spec.Path, argv, attr, confine.Limits{Keep: c.Caps})
}

func (sv *child) exitedLocked(ws syscall.WaitStatus) {
	s := sv.sup
	s.opt.Logf("service %s (pid %d) exited: %s", sv.spec.Name, sv.pid, describe(ws))
	sv.pid, sv.ready = 0, false
	close(sv.exited)
	s.notifyChangeLocked()
	if s.stopping {
		return
	}
	if ws.Exited() && ws.ExitStatus() == service.NoRestart {
		s.opt.Logf("service %s asked not to be restarted", sv.spec.Name)
		sv.stopped = true
		return
	}
	if time.Since(sv.started) > s.opt.StableAfter {
		sv.backoff = s.opt.MinBackoff
	}
	sv.scheduleRestartLocked()
}

func (sv *child) scheduleRestartLocked() {
	s := sv.sup
	d := sv.backoff
	sv.backoff = min(2*sv.backoff, s.opt.MaxBackoff)
	sv.restarts++
	s.opt.Logf("service %s: restart in %s", sv.spec.Name, d)
	time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if sv.pid == 0 {
			sv.startLocked()
		}
	})
}

func (sv *child) stop(timeout time.Duration) {
	s := sv.sup
	s.mu.Lock()
	pid, exited := sv.pid, sv.exited
	s.mu.Unlock()
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(timeout):
		s.opt.Logf("service %s did not stop in %s: killing", sv.spec.Name, timeout)
		syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	}
}

// listenNotify opens a service's notify socket; a confined service owns
// it (sending to a socket needs write permission on it).
func listenNotify(path string, c *Confinement) (*net.UnixConn, error) {
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil || c == nil {
		return conn, err
	}
	if err := os.Chown(path, int(c.UID), int(c.GID)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// readNotify applies sd_notify datagrams: newline-separated KEY=VALUE.
func (sv *child) readNotify(ctx context.Context, c *net.UnixConn) {
	go func() { <-ctx.Done(); c.Close() }()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		sv.apply(string(buf[:n]))
	}
}

func (sv *child) apply(msg string) {
	s := sv.sup
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.pid == 0 {
		return
	}
	for _, line := range strings.Split(msg, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "READY":
			if v == "1" && !sv.ready {
				sv.ready = true
				s.opt.Logf("service %s ready", sv.spec.Name)
				s.notifyChangeLocked()
			}
		case "WATCHDOG":
			sv.lastPing = time.Now()
		case "STATUS":
			sv.status = v
		}
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}
