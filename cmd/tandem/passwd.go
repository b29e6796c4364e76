package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

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
	pw, err := readPassword(os.Stdin, stderr)
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

func readPassword(in *os.File, prompt io.Writer) (string, error) {
	if !term.IsTerminal(int(in.Fd())) {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("passwd: read the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("passwd: empty password")
		}
		return pw, nil
	}
	var got [2]string
	for i, p := range []string{"console password: ", "again: "} {
		fmt.Fprint(prompt, p)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("passwd: %w", err)
		}
		got[i] = string(b)
	}
	if got[0] != got[1] {
		return "", errors.New("passwd: the two passwords differ")
	}
	if got[0] == "" {
		return "", errors.New("passwd: empty password")
	}
	return got[0], nil
}
