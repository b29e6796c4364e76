package pid1

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
)

// ControlSocket is where PID 1 takes requests: one command a connection,
// "log", "status", "poweroff" or "reboot".
const ControlSocket = "/run/tandem/init.sock"

func (in *Init) serveControl(ctx context.Context) error {
	if err := os.MkdirAll("/run/tandem", 0o755); err != nil {
		return err
	}
	os.Remove(ControlSocket)
	l, err := net.Listen("unix", ControlSocket)
	if err != nil {
		return err
	}
	if err := os.Chmod(ControlSocket, 0o600); err != nil {
		l.Close()
		return err
	}
	go func() {
		defer l.Close()
		for ctx.Err() == nil {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go in.handleControl(c)
		}
	}()
	return nil
}

func (in *Init) handleControl(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	switch cmd := strings.TrimSpace(line); cmd {
	case "log":
		for _, l := range in.log.Lines() {
			fmt.Fprintln(c, l)
		}
	case "status":
		fmt.Fprintf(c, "slot %s\n", in.slotName())
		if in.sup != nil {
			for _, s := range in.sup.States() {
				fmt.Fprintf(c, "service %s pid=%d ready=%t restarts=%d status=%q\n", s.Name, s.PID, s.Ready, s.Restarts, s.Status)
			}
		}
	case "poweroff", "reboot":
		fmt.Fprintf(c, "%s requested\n", cmd)
		in.request(cmd)
	default:
		fmt.Fprintf(c, "unknown command %q: want log, status, poweroff or reboot\n", cmd)
	}
}

// Control sends one command to a running PID 1 and copies the answer to
// out: the client side, for when the init binary runs as a command.
func Control(cmd string, out *os.File) error {
	c, err := net.Dial("unix", ControlSocket)
	if err != nil {
		return fmt.Errorf("init control socket: %w", err)
	}
	defer c.Close()
	fmt.Fprintln(c, cmd)
	_, err = bufio.NewReader(c).WriteTo(out)
	return err
}
