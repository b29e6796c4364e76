// Command init is tandem's PID 1 (see package tandem/init/pid1). Run as any
// other process it is the client of a running init's control socket:
//
//	init log|status|poweroff|reboot
package main

import (
	"fmt"
	"os"

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
	if len(args) != 1 {
		return fmt.Errorf("usage: init log|status|poweroff|reboot (PID 1 is tandem's init; this talks to it)")
	}
	return pid1.Control(args[0], os.Stdout)
}
