package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/internal/confine"
	"tandem/internal/sysinit"

	"golang.org/x/sys/unix"
)

// initEnv carries the container init's spec (JSON) when the host side
// re-executes its binary as the container's PID 1.
const initEnv = "TANDEM_CONTAINER_INIT"

// IsInit reports whether this process is a container's init: Host.Start
// re-executed the binary. Its main (or TestMain) then calls RunInit first
// thing, before anything else runs:
//
//	if container.IsInit() {
//		os.Exit(container.RunInit())
//	}
func IsInit() bool { return os.Getenv(initEnv) != "" }

// RunInit is the container's PID 1: it sets the container up, starts its
// services, serves the control socket and returns the exit code once
// stopped.
func RunInit() int { return runInit(os.Getenv(initEnv)) }

// Spec is what the host process tells the init.
type Spec struct {
	// Root is the workload root (host path); the init listens on its
	// control socket there and pivots into Root/rootfs.
	Root     string `json:"root"`
	Hostname string `json:"hostname"`
	// Services start in order and stop in reverse.
	Services []Service `json:"services"`
	// Confine, if set, confines every process the init starts, its
	// services and the commands exec runs: no_new_privs, and a bounding
	// set of Confine.Keep only, so not even root in the container holds
	// another capability. The init itself keeps its own.
	Confine *confine.Limits `json:"confine,omitempty"`
}

type Service struct {
	Name        string        `json:"name"`
	Argv        []string      `json:"argv"`
	StopTimeout time.Duration `json:"stop_timeout"`
}

// Request and Reply are the control socket's protocol: one JSON Request
// per connection, one Reply.
type Request struct {
	Op      string        `json:"op"` // status, exec, signal, stop
	Argv    []string      `json:"argv,omitempty"`
	User    string        `json:"user,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Service and Signal: signal sends Signal to the running Service
	// (Spec.Services' name), e.g. SIGHUP to make a daemon reload.
	Service string         `json:"service,omitempty"`
	Signal  syscall.Signal `json:"signal,omitempty"`
}

type Reply struct {
	Services []ServiceState `json:"services,omitempty"`
	Exit     int            `json:"exit"`
	Output   string         `json:"output,omitempty"`
	TimedOut bool           `json:"timed_out,omitempty"`
	Error    string         `json:"error,omitempty"`
}

type ServiceState struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Exit    string `json:"exit,omitempty"`
}

// container is the init's state.
type initState struct {
	spec Spec
	logf func(string, ...any)

	mu       sync.Mutex
	waiters  map[int]chan unix.WaitStatus // pid -> its exit
	unclaimd map[int]unix.WaitStatus      // reaped before anyone waited
	services []*svc
}

type svc struct {
	Service
	pid  int
	done chan unix.WaitStatus
	exit string
}

func runInit(specJSON string) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s container-init: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
	var spec Spec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		logf("bad spec: %v", err)
		return 2
	}
	_ = os.Unsetenv(initEnv) // a constant, valid name: cannot fail
	c := &initState{spec: spec, logf: logf, waiters: map[int]chan unix.WaitStatus{}, unclaimd: map[int]unix.WaitStatus{}}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	ln, err := c.setup()
	if err != nil {
		logf("%v", err)
		return 1
	}
	go c.reap(sigc)
	stop := make(chan chan struct{}, 1)
	go c.serve(ln, stop)
	for _, s := range spec.Services {
		if err := c.start(s); err != nil {
			logf("start %s: %v", s.Name, err)
		}
	}
	if spec.Confine != nil {
		logf("up: %s (its processes confined: no_new_privs, capabilities %s)", spec.Hostname, confine.Names(spec.Confine.Mask()))
	} else {
		logf("up: %s", spec.Hostname)
	}
	done := <-stop
	c.stopAll()
	ln.Close()
	close(done)
	time.Sleep(100 * time.Millisecond) // let the stop Reply go out
	logf("stopped")
	return 0
}

// setup makes the mounts private, opens the control socket, builds the
// container's mounts and pivots into Root/rootfs.
func (c *initState) setup() (*net.UnixListener, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	sock := filepath.Join(c.spec.Root, socketName)
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	rootfs := filepath.Join(c.spec.Root, "rootfs")
	quiet := func(string, ...any) {} // a failure is reported, the rest is routine
	if err := sysinit.Run(context.Background(), mountSteps(rootfs), quiet); err != nil {
		return nil, err
	}
	if err := unix.Sethostname([]byte(c.spec.Hostname)); err != nil {
		return nil, fmt.Errorf("sethostname: %w", err)
	}
	return ln, nil
}

// mountSteps are the container's mounts, then the pivot into rootfs
// (pivot_root(".", ".") and a lazy unmount of the old root, as runc does).
func mountSteps(rootfs string) []sysinit.Step {
	do := func(name string, f func() error) sysinit.Step {
		return sysinit.Step{Name: name, Do: func(context.Context) error { return f() }}
	}
	m := func(src, dst, fstype string, flags uintptr, data string) sysinit.Step {
		return do("mount "+dst, func() error { return unix.Mount(src, dst, fstype, flags, data) })
	}
	steps := []sysinit.Step{
		m(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""),
		m("proc", rootfs+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""),
		m("tmpfs", rootfs+"/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=16m"),
		m("tmpfs", rootfs+"/dev", "tmpfs", unix.MS_NOSUID, "mode=0755,size=64k"),
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom"} {
		dst := rootfs + "/dev/" + d
		steps = append(steps, do("create "+dst, func() error { return os.WriteFile(dst, nil, 0o666) }),
			m("/dev/"+d, dst, "", unix.MS_BIND, ""))
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		steps = append(steps, do("symlink /dev/"+name, func() error { return os.Symlink(target, rootfs+"/dev/"+name) }))
	}
	return append(steps,
		do("chdir "+rootfs, func() error { return unix.Chdir(rootfs) }),
		do("enter rootfs", enterRoot),
		do("chdir /", func() error { return unix.Chdir("/") }),
	)
}

// enterRoot makes the current directory the root: pivot_root(".", ".")
// and a lazy unmount of the old root, as runc does. A node's own root is
// its initramfs (rootfs), which pivot_root refuses to move (EINVAL, see
// pivot_root(2)); there the new root is moved over "/" and chrooted into,
// as switch_root does (runc's --no-pivot). The old root then stays
// mounted beneath, in this mount namespace only.
func enterRoot() error {
	err := unix.PivotRoot(".", ".")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move the root over /: %w", err)
		}
		return unix.Chroot(".")
	}
	if err != nil {
		return err
	}
	return unix.Unmount(".", unix.MNT_DETACH)
}

// containerEnv is every program's environment in the container.
var containerEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "HOME=/root"}

func (c *initState) start(s Service) error {
	pid, err := c.spawn(s.Argv, nil, os.Stdout, false)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.services = append(c.services, &svc{Service: s, pid: pid, done: c.waiterLocked(pid)})
	c.mu.Unlock()
	c.logf("started %s (pid %d): %s", s.Name, pid, strings.Join(s.Argv, " "))
	return nil
}

// spawn starts argv with cred (nil: root), confined by the spec's
// Confine, with out as stdout and stderr, in its own process group if
// pgrp (not for daemons that call setsid themselves, as Postfix's master
// does: a group leader cannot).
func (c *initState) spawn(argv []string, cred *syscall.Credential, out *os.File, pgrp bool) (int, error) {
	devnull, err := os.Open("/dev/null")
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	env := containerEnv
	if cred != nil {
		env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	}
	attr := &os.ProcAttr{
		Dir: "/", Env: env, Files: []*os.File{devnull, out, out},
		Sys: &syscall.SysProcAttr{Setpgid: pgrp, Credential: cred},
	}
	var p *os.Process
	if c.spec.Confine != nil {
		p, err = confine.StartProcess(argv[0], argv, attr, *c.spec.Confine)
	} else {
		p, err = os.StartProcess(argv[0], argv, attr)
	}
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release()
	return pid, nil
}

// waiterLocked returns the channel that receives pid's exit status.
func (c *initState) waiterLocked(pid int) chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	if ws, ok := c.unclaimd[pid]; ok {
		delete(c.unclaimd, pid)
		ch <- ws
		return ch
	}
	c.waiters[pid] = ch
	return ch
}

// reap collects every child (PID 1 adopts the container's orphans) and
// turns SIGTERM into a stop.
func (c *initState) reap(sigc chan os.Signal) {
	for sig := range sigc {
		if sig != unix.SIGCHLD {
			go c.requestStop()
			continue
		}
		sysinit.Reap(func(pid int, sws syscall.WaitStatus) {
			ws := unix.WaitStatus(sws)
			c.mu.Lock()
			if ch, ok := c.waiters[pid]; ok {
				delete(c.waiters, pid)
				ch <- ws
			} else {
				c.unclaimd[pid] = ws
				if len(c.unclaimd) > 1024 {
					clear(c.unclaimd) // daemons' grandchildren nobody waits for
				}
			}
			for _, s := range c.services {
				if s.pid == pid {
					s.exit = describe(ws)
					c.logf("%s (pid %d) exited: %s", s.Name, pid, s.exit)
				}
			}
			c.mu.Unlock()
		})
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

var stopReq = make(chan struct{}, 1)

func (c *initState) requestStop() {
	select {
	case stopReq <- struct{}{}:
	default:
	}
}

// serve answers the control socket until a stop is asked for (by Request
// or SIGTERM); then it hands the stop to runInit and answers the stop
// Request once everything is down.
func (c *initState) serve(ln *net.UnixListener, stop chan chan struct{}) {
	conns := make(chan *net.UnixConn)
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			conns <- conn
		}
	}()
	for {
		select {
		case <-stopReq:
			stop <- make(chan struct{})
			return
		case conn := <-conns:
			var req Request
			conn.SetDeadline(time.Now().Add(time.Minute))
			if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
				conn.Close()
				continue
			}
			if req.Op == "stop" {
				done := make(chan struct{})
				stop <- done
				<-done
				_ = json.NewEncoder(conn).Encode(Reply{Services: c.states()}) // the daemon went away: nobody to tell
				conn.Close()
				return
			}
			go c.answer(conn, req)
		}
	}
}

func (c *initState) answer(conn *net.UnixConn, req Request) {
	defer conn.Close()
	var r Reply
	switch req.Op {
	case "status":
		r.Services = c.states()
	case "exec":
		conn.SetDeadline(time.Now().Add(req.Timeout + time.Minute))
		r = c.exec(req)
	case "signal":
		if err := c.signal(req.Service, req.Signal); err != nil {
			r.Error = err.Error()
		}
	default:
		r.Error = "unknown op " + req.Op
	}
	_ = json.NewEncoder(conn).Encode(r) // the daemon went away: nobody to tell
}

// signal sends sig to the named service while it runs.
func (c *initState) signal(name string, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		if s.Name != name {
			continue
		}
		if s.exit != "" {
			return fmt.Errorf("signal: service %s is not running (%s)", name, s.exit)
		}
		if err := unix.Kill(s.pid, sig); err != nil {
			return fmt.Errorf("signal %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("signal: no service %q", name)
}

func (c *initState) states() []ServiceState {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ServiceState
	for _, s := range c.services {
		out = append(out, ServiceState{Name: s.Name, Pid: s.pid, Running: s.exit == "", Exit: s.exit})
	}
	return out
}

// exec runs a command as a user of the container (looked up in its
// /etc/passwd) with a timeout, its output in a file on /run so daemons it
// leaves behind cannot hold up the Reply.
func (c *initState) exec(req Request) Reply {
	if len(req.Argv) == 0 {
		return Reply{Error: "exec: no command"}
	}
	cred, err := lookupUser(req.User)
	if err != nil {
		return Reply{Error: err.Error()}
	}
	out, err := os.CreateTemp("/run", "exec-*.out")
	if err != nil {
		return Reply{Error: err.Error()}
	}
	defer os.Remove(out.Name())
	defer out.Close()
	c.mu.Lock()
	pid, err := c.spawn(req.Argv, cred, out, true)
	var done chan unix.WaitStatus
	if err == nil {
		done = c.waiterLocked(pid)
	}
	c.mu.Unlock()
	if err != nil {
		return Reply{Error: fmt.Sprintf("exec %s: %v", req.Argv[0], err)}
	}
	var r Reply
	select {
	case ws := <-done:
		r.Exit = ws.ExitStatus()
		if ws.Signaled() {
			r.Exit = 128 + int(ws.Signal())
		}
	case <-time.After(req.Timeout):
		unix.Kill(-pid, unix.SIGKILL)
		<-done
		r.TimedOut, r.Exit = true, -1
	}
	b, _ := os.ReadFile(out.Name())
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	r.Output = string(b)
	return r
}

// lookupUser reads the container's /etc/passwd for name.
func lookupUser(name string) (*syscall.Credential, error) {
	if name == "" || name == "root" {
		return nil, nil
	}
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 4 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("user %s: bad /etc/passwd line", name)
			}
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, fmt.Errorf("no user %s in the container's /etc/passwd", name)
}

// stopAll stops the services in reverse order (SIGTERM, then SIGKILL to
// the process group after the service's stop timeout), then kills
// whatever is left in the container and reaps it.
func (c *initState) stopAll() {
	c.mu.Lock()
	svcs := append([]*svc(nil), c.services...)
	c.mu.Unlock()
	for i := len(svcs) - 1; i >= 0; i-- {
		s := svcs[i]
		c.logf("stopping %s", s.Name)
		unix.Kill(s.pid, unix.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(s.StopTimeout):
			c.logf("%s did not stop in %s: killing it", s.Name, s.StopTimeout)
			unix.Kill(-s.pid, unix.SIGKILL)
			unix.Kill(s.pid, unix.SIGKILL)
			<-s.done
		}
	}
	// Anything else (a daemon's stray child) dies now; as PID 1 of the
	// namespace the init is not hit by its own kill(-1).
	unix.Kill(-1, unix.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !hasChildren() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.logf("processes still present after SIGKILL")
}

// hasChildren reports whether any process but the init is left.
func hasChildren() bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != 1 {
			return true
		}
	}
	return false
}

var ErrNoInit = errors.New("no init listening")
