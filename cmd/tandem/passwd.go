package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"tandem/internal/passwd"
	"tandem/internal/service"
)

// runPasswd prints the hash of a console password for console.password
// of a node config: asked twice without echo on a terminal, else the
// first line of stdin.
func runPasswd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("passwd", "usage: tandem passwd < PASSWORD\n\nPrints the hash of a console password for console.password in a node config\n(docs/node-config.md): the rescue shell asks for it, and GRUB's menu is locked\nwith it. On a terminal the password is asked for twice, without echo.\n", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("passwd takes no arguments (the password comes from the terminal or stdin)")
	}
	pw, err := passwd.Read(os.Stdin, stderr, "console password")
	if err != nil {
		return err
	}
	h, err := passwd.Hash(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
