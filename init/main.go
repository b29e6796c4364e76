// Command init is tandem's PID 1 (see package tandem/init/pid1). Run as any
// other process it is the client of a running init's control socket, or
// the rescue shell's password prompt PID 1 starts on the console:
//
//	init log|status|poweroff|reboot
//	init rescue
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"tandem/init/pid1"
)

func main() {
	if os.Getpid() == 1 {
		pid1.Main() // never returns
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 1 && args[0] == "rescue" {
		if err := pid1.RescueLogin(os.Stdin, os.Stdout, 2*time.Second); err != nil {
			return err
		}
		return syscall.Exec("/bin/sh", []string{"/bin/sh"}, []string{pid1.RescuePath})
	}
	if len(args) != 1 {
		return fmt.Errorf("usage: init log|status|poweroff|reboot|rescue (PID 1 is tandem's init; this talks to it)")
	}
	return pid1.Control(args[0], os.Stdout)
}
