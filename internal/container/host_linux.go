package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/service"
)

// socketName is the init's control socket in the container's root.
const socketName = "init.sock"

// Host is the host side of one container: the directory it lives in and
// how its processes run.
type Host struct {
	// Root holds the container: the init's control socket, its log (Log)
	// and rootfs/, which the init pivots into.
	Root string
	// Log is the container's log file (the init's and the daemons'
	// output), relative to Root.
	Log string
	// Nice is the nice value of every process in the container.
	Nice int
	// Logf reports what the host side does.
	Logf func(format string, args ...any)
}

// SocketPath is the init's control socket (a Unix socket path: at most 107 bytes).
func (w *Host) SocketPath() string { return filepath.Join(w.Root, socketName) }

func (w *Host) logf(format string, args ...any) {
	if w.Logf != nil {
		w.Logf(format, args...)
	}
}

// Start re-executes this binary as the container's init (the binary's main
// calls RunInit when IsInit) in new mount, PID, UTS and IPC namespaces (the
// network namespace is the host's, so the daemons listen on the node's
// addresses and the VIP). The init runs on after this returns.
func (w *Host) Start(spec Spec) error {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("container: find own binary: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(w.Root, w.Log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("container: %w", err)
	}
	defer logf.Close()
	os.Remove(w.SocketPath())
	cmd := exec.Command(self)
	cmd.Args = []string{"tandem-container-init"}
	cmd.Env = []string{initEnv + "=" + string(specJSON), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("container: start container init: %w", err)
	}
	// The init leads its own process group (Setsid); every process it
	// starts inherits the value.
	if err := service.SetNice(cmd.Process.Pid, w.Nice); err != nil {
		w.logf("container init: %v", err)
	}
	w.logf("container init started (pid %d, nice %d)", cmd.Process.Pid, w.Nice)
	go func() { _ = cmd.Wait() }() // reap it (its end shows in the control socket); a restarted daemon leaves that to PID 1
	return nil
}

// call sends one Request to the init and decodes its Reply. It returns
// ErrNoInit (wrapped) when nothing listens on the socket.
func (w *Host) Call(ctx context.Context, req Request) (Reply, int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", w.SocketPath())
	if err != nil {
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			return Reply{}, 0, fmt.Errorf("%w: %v", ErrNoInit, err)
		}
		return Reply{}, 0, fmt.Errorf("container: control socket: %w", err)
	}
	defer conn.Close()
	pid := peerPid(conn.(*net.UnixConn))
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return Reply{}, pid, fmt.Errorf("container: control socket: %s: %w", req.Op, err)
	}
	var r Reply
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		return Reply{}, pid, fmt.Errorf("container: control socket: %s reply: %w", req.Op, err)
	}
	if r.Error != "" {
		return r, pid, fmt.Errorf("container: %s", r.Error)
	}
	return r, pid, nil
}

// peerPid is the host PID of the process that listens on the socket: the
// init (SO_PEERCRED, translated into our PID namespace).
func peerPid(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	err = raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return 0
	}
	return int(cred.Pid)
}

// waitGone waits until pid has exited, or ctx ends.
func waitGone(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		ms := 200
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Stop asks the init to stop everything and waits for it to exit;
// when ctx is nearly over, or the init does not answer, it kills the init,
// and with it every process of the container's PID namespace.
func (w *Host) Stop(ctx context.Context) error {
	st, pid, err := w.Call(ctx, Request{Op: "status"})
	if errors.Is(err, ErrNoInit) {
		os.Remove(w.SocketPath())
		return nil
	}
	_ = st
	if pid == 0 {
		return fmt.Errorf("container: cannot tell the container init's pid: %v", err)
	}
	grace := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		grace, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/5))
		defer cancel()
	}
	if _, _, err := w.Call(grace, Request{Op: "stop"}); err != nil {
		w.logf("clean stop failed (%v): killing the container", err)
	}
	if err := waitGone(grace, pid); err != nil {
		w.logf("container init %d still up: killing it", pid)
		unix.Kill(pid, unix.SIGKILL)
		if err := waitGone(ctx, pid); err != nil {
			return fmt.Errorf("container: container init %d does not exit: %w", pid, err)
		}
	}
	os.Remove(w.SocketPath())
	return nil
}
