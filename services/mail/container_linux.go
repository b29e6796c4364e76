package mail

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

// socketName is the init's control socket in the workload root.
const socketName = "init.sock"

// logName is the container's log (the init's and the daemons' output) in
// the workload root.
const logName = "mail.log"

func (w *Workload) socketPath() string { return filepath.Join(w.Root, socketName) }

// WorkloadNice is the mail workload's nice value (see startInit).
const WorkloadNice = 5

// startInit re-executes this binary as the container's init in new mount,
// PID, UTS and IPC namespaces (the network namespace is the host's, so
// the daemons listen on the VIP). The init runs on after this returns.
func (w *Workload) startInit(spec initSpec) error {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("mail: find own binary: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(w.Root, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	defer logf.Close()
	os.Remove(w.socketPath())
	cmd := exec.Command(self)
	cmd.Args = []string{"tandem-mail-init"}
	cmd.Env = []string{initEnv + "=" + string(specJSON), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mail: start container init: %w", err)
	}
	// The workload yields the CPU to the node's own services: on a loaded
	// node, Postfix and Dovecot starting at the same priority as the
	// cluster daemon kept its etcd from answering lease renewals for
	// seconds, until the owner lost its lease (Corosync runs at real-time
	// priority for the same reason). The init leads its own process group
	// (Setsid); every process it starts inherits the value.
	if err := service.SetNice(cmd.Process.Pid, WorkloadNice); err != nil {
		w.logf("container init: %v", err)
	}
	w.logf("container init started (pid %d, nice %d)", cmd.Process.Pid, WorkloadNice)
	go func() { _ = cmd.Wait() }() // reap it (its end shows in the control socket); a restarted daemon leaves that to PID 1
	return nil
}

// call sends one request to the init and decodes its reply. It returns
// errNoInit (wrapped) when nothing listens on the socket.
func (w *Workload) call(ctx context.Context, req request) (reply, int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", w.socketPath())
	if err != nil {
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			return reply{}, 0, fmt.Errorf("%w: %v", errNoInit, err)
		}
		return reply{}, 0, fmt.Errorf("mail: control socket: %w", err)
	}
	defer conn.Close()
	pid := peerPid(conn.(*net.UnixConn))
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return reply{}, pid, fmt.Errorf("mail: control socket: %s: %w", req.Op, err)
	}
	var r reply
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		return reply{}, pid, fmt.Errorf("mail: control socket: %s reply: %w", req.Op, err)
	}
	if r.Error != "" {
		return r, pid, fmt.Errorf("mail: container: %s", r.Error)
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

// stopInit asks the init to stop everything and waits for it to exit;
// when ctx is nearly over, or the init does not answer, it kills the init,
// and with it every process of the container's PID namespace.
func (w *Workload) stopInit(ctx context.Context) error {
	st, pid, err := w.call(ctx, request{Op: "status"})
	if errors.Is(err, errNoInit) {
		os.Remove(w.socketPath())
		return nil
	}
	_ = st
	if pid == 0 {
		return fmt.Errorf("mail: cannot tell the container init's pid: %v", err)
	}
	grace := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		grace, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/5))
		defer cancel()
	}
	if _, _, err := w.call(grace, request{Op: "stop"}); err != nil {
		w.logf("clean stop failed (%v): killing the container", err)
	}
	if err := waitGone(grace, pid); err != nil {
		w.logf("container init %d still up: killing it", pid)
		unix.Kill(pid, unix.SIGKILL)
		if err := waitGone(ctx, pid); err != nil {
			return fmt.Errorf("mail: container init %d does not exit: %w", pid, err)
		}
	}
	os.Remove(w.socketPath())
	return nil
}
