// Package yamlstrict decodes tandem's configuration files (recipes,
// hardware profiles, node config, cluster config) one way: a file holds one
// document, an unknown or misspelled field is an error naming its line and
// the fields allowed there, and a later validation error about a field
// (FieldError) is placed on the line of that field. Every error reads
// "FILE:LINE: FIELD.PATH: what is wrong".
package yamlstrict

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every error about a file's content.
var ErrInvalid = errors.New("invalid configuration")

// ErrEmpty is returned (wrapping ErrInvalid) for a file with no document.
var ErrEmpty = fmt.Errorf("empty file: %w", ErrInvalid)

// FieldError is a validation error about one field, named by its dotted
// path (e.g. "disk.boot_mib", "services[1].name").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Errorf returns a FieldError about field.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Doc is a decoded file, kept to place validation errors on their lines.
type Doc struct {
	name string
	root *yaml.Node // the top mapping
}

// Decode decodes the YAML document in data into out (a pointer to a
// struct). Before decoding it walks the document against out's type, so an
// unknown or misspelled field is reported with its line and the fields that
// are allowed there. A file holds one document: a second one (after a
// "---") is an error on that line. name (the file's path) starts every
// error.
func Decode(name string, data []byte, out any) (*Doc, error) {
	root, err := oneDocument(name, data)
	if err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		// The Doc still places errors (on no line) for a caller to whom an
		// empty file is all defaults.
		return &Doc{name: name}, fmt.Errorf("%s: %w", name, ErrEmpty)
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: expected a mapping of fields at the top: %w", name, top.Line, ErrInvalid)
	}
	if err := checkFields(top, reflect.TypeOf(out).Elem(), ""); err != nil {
		return nil, fmt.Errorf("%s:%w", name, err)
	}
	if err := top.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %s: %w", name, oneLine(strings.Join(te.Errors, "; ")), ErrInvalid)
		}
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalid, err)
	}
	return &Doc{name: name, root: top}, nil
}

// oneLine escapes the control characters (newlines) of a message that
// quotes a value from the file, so that every line of an error starts
// with the file's name.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// oneDocument parses data's only document; with none it returns an empty
// node.
func oneDocument(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root, next yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalid, err)
	}
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return &root, nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalid, err)
	}
	return nil, fmt.Errorf("%s:%d: a second YAML document (after \"---\"): a configuration file holds one: %w", name, next.Line, ErrInvalid)
}

// checkFields reports the first mapping key that t has no yaml field for.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return nil // it decodes itself
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("%d: unknown field %q%s (expected one of: %s): %w",
					k.Line, k.Value, inPath(path), strings.Join(sortedKeys(fields), ", "), ErrInvalid)
			}
			if err := checkFields(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkFields(c, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// yamlFields maps the YAML names of t's fields, those of its inline
// structs included, to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Locate prefixes err with the file and, for each FieldError in it (one,
// or several joined with errors.Join), the line of the field it names.
func (d *Doc) Locate(err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, d.Locate(e))
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) && d.root != nil {
		if line := lineOf(d.root, fe.Field); line > 0 {
			return fmt.Errorf("%s:%d: %w", d.name, line, err)
		}
	}
	return fmt.Errorf("%s: %w", d.name, err)
}

// lineOf finds the line of a dotted field path ("a.b[2].c") in n, or of the
// nearest parent that exists; 0 if none does.
func lineOf(n *yaml.Node, path string) int {
	line := 0
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := mapValue(n, key)
		if next == nil {
			return line
		}
		line, n = next.Line, next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
