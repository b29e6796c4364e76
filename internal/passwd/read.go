package passwd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Read reads a new password: on a terminal asked for twice without echo
// (prompts "WHAT: " and "again: "), else the first line of in. An empty
// password, or two that differ, is an error.
func Read(in *os.File, prompt io.Writer, what string) (string, error) {
	if !term.IsTerminal(int(in.Fd())) {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("read the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("empty password")
		}
		return pw, nil
	}
	var got [2]string
	for i, p := range []string{what + ": ", "again: "} {
		fmt.Fprint(prompt, p)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		got[i] = string(b)
	}
	if got[0] != got[1] {
		return "", errors.New("the two passwords differ")
	}
	if got[0] == "" {
		return "", errors.New("empty password")
	}
	return got[0], nil
}
