package pid1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"tandem/internal/atomicfile"
	"tandem/internal/nodeconfig"
	"tandem/internal/passwd"
)

// The console password (console.password of the node config, a hash
// from tandem passwd) guards the two ways into a node at its console:
// GRUB's menu editor, where kernel arguments such as tandem.rescue=1
// could be added, and PID 1's rescue shell. docs/security.md.

// grubPasswordPath is the file grub.cfg sources when it exists
// (image/grub); GRUB's menu can then only be edited by its superuser.
const grubPasswordPath = "/boot/grub/password.cfg"

// consoleEnv passes the hash to the rescue login (init rescue).
const consoleEnv = "TANDEM_CONSOLE_PASSWORD"

// applyConsole reads the console password from the node config and
// writes GRUB's password file to match: the hash as its superuser's
// password, or no file when there is none. Without a readable node config
// there is no password (and no rescue shell).
func (in *Init) applyConsole(context.Context) error {
	in.consoleHash = ""
	if nc, err := nodeconfig.LoadFile(in.nodeConfig()); err == nil {
		in.consoleHash = nc.Console.Password
	} else if !errors.Is(err, os.ErrNotExist) {
		in.log.Logf("console: node config: %v (no console password)", err)
	}
	if in.disk == nil {
		return nil // PXE: no GRUB of ours
	}
	return writeGrubPassword(grubPasswordPath, in.consoleHash, in.log.Logf)
}

// writeGrubPassword makes path hold GRUB's superuser for hash, or
// removes it for "", writing only when it changes.
func writeGrubPassword(path, hash string, logf func(string, ...any)) error {
	if hash == "" {
		err := os.Remove(path)
		if err == nil {
			logf("console: no console password: GRUB's menu is not locked")
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("console: %w", err)
		}
		return nil
	}
	if err := passwd.Valid(hash); err != nil {
		return fmt.Errorf("console: %w", err) // a hash of the wrong form never reaches grub.cfg
	}
	want := []byte("# Written by tandem's PID 1 from console.password of the node config.\nset superusers=\"root\"\npassword_pbkdf2 root " + hash + "\n")
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, want) {
		return nil
	}
	if err := atomicfile.Write(path, want, 0o600); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	logf("console: GRUB's menu locked with the console password (user root)")
	return nil
}

// RescueLogin is the rescue shell's gate (init rescue, started by PID 1
// on the console for tandem.rescue=1): it asks for the console password
// (the hash in $TANDEM_CONSOLE_PASSWORD) without echo until it is right;
// each wrong one costs a longer wait (penalty times the failures, at most
// 30 s). The caller then runs the shell.
func RescueLogin(tty *os.File, out io.Writer, penalty time.Duration) error {
	hash := os.Getenv(consoleEnv)
	if hash == "" {
		return errors.New("rescue: no console password")
	}
	for fails := 0; ; {
		// A line of its own: serial consoles and their loggers show
		// whole lines.
		fmt.Fprintln(out, "tandem rescue: console password (not shown):")
		pw, err := readSecret(tty)
		if err != nil {
			return fmt.Errorf("rescue: %w", err)
		}
		ok, err := passwd.Check(hash, pw)
		if err != nil {
			return fmt.Errorf("rescue: %w", err)
		}
		if ok {
			fmt.Fprintln(out, "tandem rescue: root shell")
			return nil
		}
		fails++
		fmt.Fprintln(out, "tandem rescue: wrong password")
		time.Sleep(min(time.Duration(fails)*penalty, 30*time.Second))
	}
}

// readSecret reads a line without echo from a terminal, or plainly from
// anything else.
func readSecret(f *os.File) (string, error) {
	if term.IsTerminal(int(f.Fd())) {
		b, err := term.ReadPassword(int(f.Fd()))
		return string(b), err
	}
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := f.Read(buf)
		if n == 1 && buf[0] != '\n' {
			line = append(line, buf[0])
		}
		if n == 1 && buf[0] == '\n' || err != nil {
			if err == io.EOF && len(line) > 0 {
				err = nil
			}
			return string(bytes.TrimSuffix(line, []byte("\r"))), err
		}
	}
}
