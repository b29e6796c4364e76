package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The control socket (lab.sock in Options.Dir) lets `tandem lab` in
// another shell reach the switch in the process that runs the lab: one
// JSON request, one JSON response per connection.

type request struct {
	Op    string   // status, partition, heal, boot, reboot, shutdown, stop
	Nodes []string `json:",omitempty"`
}

type response struct {
	Error string `json:",omitempty"`
	State *State `json:",omitempty"`
}

func (l *Lab) serveControl() error {
	path := filepath.Join(l.opts.Dir, controlSocket)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("lab: control socket: %w", err)
	}
	l.ctl = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.handle(c)
		}
	}()
	return nil
}

// shutdownLimit bounds a shutdown through the control socket: services
// stop within 10 s each, but a TCG guest on a loaded machine is slow.
const shutdownLimit = 3 * time.Minute

// opTimeout is how long the client waits for op's answer.
func opTimeout(op string) time.Duration {
	if op == "shutdown" {
		return shutdownLimit + 10*time.Second
	}
	return 30 * time.Second
}

func (l *Lab) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		return
	}
	c.SetDeadline(time.Now().Add(opTimeout(req.Op)))
	var err error
	switch req.Op {
	case "status":
	case "partition":
		err = l.Partition(req.Nodes...)
	case "heal":
		err = l.Heal()
	case "boot", "reboot", "shutdown":
		err = l.power(req.Op, req.Nodes)
	case "stop":
		err = l.Stop() // answers once everything is down
		resp := response{}
		if err != nil {
			resp.Error = err.Error()
		}
		_ = json.NewEncoder(c).Encode(resp) // the client went away: nobody to tell
		return
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	var resp response
	if err != nil {
		resp.Error = err.Error()
	} else {
		s := l.Status()
		resp.State = &s
	}
	_ = json.NewEncoder(c).Encode(resp) // the client went away: nobody to tell
}

// power boots, reboots or shuts down one node.
func (l *Lab) power(op string, nodes []string) error {
	if len(nodes) != 1 {
		return fmt.Errorf("%s: want one node, got %d", op, len(nodes))
	}
	switch op {
	case "boot":
		return l.Boot(nodes[0])
	case "reboot":
		return l.Reboot(nodes[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownLimit)
	defer cancel()
	return l.Shutdown(ctx, nodes[0])
}

// ErrNotRunning is returned when no process answers on a lab's control
// socket.
var ErrNotRunning = errors.New("no lab running")

// Control sends op ("status", "partition", "heal", "boot", "reboot",
// "shutdown", "stop") with nodes to the lab running in dir and returns its
// state after the operation.
func Control(dir, op string, nodes ...string) (*State, error) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, controlSocket), 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w: %v", dir, ErrNotRunning, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(opTimeout(op)))
	if err := json.NewEncoder(c).Encode(request{Op: op, Nodes: nodes}); err != nil {
		return nil, fmt.Errorf("lab %s: %s: %w", dir, op, err)
	}
	var resp response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("lab %s: %s: %w", dir, op, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("lab %s: %s: %s", dir, op, resp.Error)
	}
	return resp.State, nil
}

// Down stops the lab in dir: through its control socket, or, if its
// process is gone, by killing the QEMUs in lab.json and removing the
// namespace.
func Down(dir string) error {
	if _, err := Control(dir, "stop"); err == nil {
		return nil
	}
	s, err := ReadState(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range s.Nodes {
		errs = append(errs, killQEMU(n.PID))
	}
	errs = append(errs, removeNetns(s.Netns))
	os.Remove(filepath.Join(dir, stateFile))
	os.Remove(filepath.Join(dir, controlSocket))
	return errors.Join(errs...)
}
