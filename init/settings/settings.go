// Package settings gives a node its settings from three places, in a fixed
// order: the kernel command line (tandem.KEY=VALUE), then the perm
// partition (/perm/settings.yaml), then the image (/etc/tandem/settings.yaml).
// The first place that has a key wins, so an admin can override anything
// from the boot prompt, and a node keeps what it learned on perm across
// updates of the image.
package settings

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Where the node looks, in order after the command line.
const (
	PermFile  = "/perm/settings.yaml"
	ImageFile = "/etc/tandem/settings.yaml"
	argPrefix = "tandem."
)

// Set is a node's merged settings, with the source of each value.
type Set struct {
	values map[string]string
	source map[string]string
}

var keyRE = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)

// ParseCmdline returns the tandem.KEY=VALUE arguments of a kernel command
// line; a bare tandem.KEY means "1".
func ParseCmdline(r io.Reader) (map[string]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		if !strings.HasPrefix(f, argPrefix) {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(f, argPrefix), "=")
		if !ok {
			v = "1"
		}
		if !keyRE.MatchString(k) {
			return nil, fmt.Errorf("kernel command line: %q: bad setting name %q", f, k)
		}
		out[k] = v
	}
	return out, nil
}

// ParseFile decodes a settings file: a YAML mapping of names to scalar
// values. name is used in errors.
func ParseFile(name string, r io.Reader) (map[string]string, error) {
	var m map[string]string
	dec := yaml.NewDecoder(bufio.NewReader(r))
	if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for k := range m {
		if !keyRE.MatchString(k) {
			return nil, fmt.Errorf("%s: bad setting name %q (lower-case letters, digits, '_' and '.')", name, k)
		}
	}
	return m, nil
}

// Merge layers sources, first wins; each source is (name, values).
func Merge(layers ...Layer) *Set {
	s := &Set{values: map[string]string{}, source: map[string]string{}}
	for _, l := range layers {
		for k, v := range l.Values {
			if _, ok := s.values[k]; !ok {
				s.values[k], s.source[k] = v, l.Name
			}
		}
	}
	return s
}

// Layer is one place settings come from.
type Layer struct {
	Name   string
	Values map[string]string
}

// Load reads the command line and the two files in the documented order.
// A missing file is no error; an unreadable or malformed one is.
func Load(cmdline io.Reader, permFile, imageFile string) (*Set, error) {
	cl, err := ParseCmdline(cmdline)
	if err != nil {
		return nil, err
	}
	layers := []Layer{{"cmdline", cl}}
	for _, f := range []struct{ name, path string }{{"perm", permFile}, {"image", imageFile}} {
		fh, err := os.Open(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m, err := ParseFile(f.path, fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
		layers = append(layers, Layer{f.name, m})
	}
	return Merge(layers...), nil
}

// Get returns a setting and whether it is set.
func (s *Set) Get(key string) (string, bool) {
	v, ok := s.values[key]
	return v, ok
}

// GetOr returns a setting or def.
func (s *Set) GetOr(key, def string) string {
	if v, ok := s.values[key]; ok {
		return v
	}
	return def
}

// Source says where a setting came from ("cmdline", "perm", "image").
func (s *Set) Source(key string) string { return s.source[key] }

// Env returns the settings as TANDEM_KEY=VALUE variables (dots become
// underscores), sorted, for the services' environment.
func (s *Set) Env() []string {
	var out []string
	for k, v := range s.values {
		out = append(out, "TANDEM_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	sort.Strings(out)
	return out
}
