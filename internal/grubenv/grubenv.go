// Package grubenv reads and writes GRUB's environment block: the 1024-byte
// grubenv file that load_env and save_env use. The A/B slot state lives
// there, shared between the builder, GRUB and PID 1.
package grubenv

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Size is the size of an environment block; GRUB writes it in place, so it
// never changes.
const Size = 1024

const header = "# GRUB Environment Block\n"

// ErrTooBig is returned when the variables do not fit in one block.
var ErrTooBig = errors.New("grub environment exceeds 1024 bytes")

// Env is the set of variables of a block.
type Env map[string]string

// Parse decodes a block. It accepts only a well-formed block, so a torn or
// foreign file is reported rather than silently emptied.
func Parse(b []byte) (Env, error) {
	if len(b) != Size || !bytes.HasPrefix(b, []byte(header)) {
		return nil, fmt.Errorf("not a GRUB environment block (%d bytes)", len(b))
	}
	env := Env{}
	for _, line := range strings.Split(string(b[len(header):]), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("grub environment: bad line %q", line)
		}
		env[k] = unescape(v)
	}
	return env, nil
}

// Encode returns the block for env, keys sorted so equal environments give
// equal bytes.
func (e Env) Encode() ([]byte, error) {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(header)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\n\\") {
			return nil, fmt.Errorf("grub environment: bad variable name %q", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, escape(e[k]))
	}
	if b.Len() > Size {
		return nil, ErrTooBig
	}
	b.Write(bytes.Repeat([]byte{'#'}, Size-b.Len()))
	return b.Bytes(), nil
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
