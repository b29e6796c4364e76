package yamlstrict

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Port int `yaml:"port"`
}

type base struct {
	Name string `yaml:"name"`
}

type doc struct {
	base  `yaml:",inline"`
	Peers map[string]inner `yaml:"peers"`
	List  []inner          `yaml:"list"`
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown top", "name: a\nnmae: b\n", `f.yaml:2: unknown field "nmae" (expected one of: list, name, peers)`},
		{"unknown in map value", "peers:\n  x:\n    prot: 1\n", `f.yaml:3: unknown field "prot" in peers.x (expected one of: port)`},
		{"unknown in list", "list:\n  - port: 1\n  - pot: 2\n", `f.yaml:3: unknown field "pot" in list[1]`},
		{"type", "list: [{port: many}]\n", "f.yaml: line 1: cannot unmarshal"},
		{"type of a multi-line value", "peers: a\n\n b\n", "f.yaml: line 1: cannot unmarshal !!str `a\\nb` into map"},
		{"not a mapping", "- a\n", "f.yaml:1: expected a mapping"},
		{"empty", "# nothing\n", "f.yaml: empty file"},
		{"second document", "name: a\n---\nname: b\n", `f.yaml:2: a second YAML document (after "---")`},
		{"second after end marker", "name: a\n...\n---\nname: b\n", `f.yaml:3: a second YAML document`},
		{"empty second document", "name: a\n---\n# nothing\n", `f.yaml:2: a second YAML document`},
		{"bad second document", "name: a\n---\n[\n", "f.yaml: invalid configuration: yaml: line 3:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d doc
			_, err := Decode("f.yaml", []byte(c.yaml), &d)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %v, want an ErrInvalid starting with %s", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Decode = %q, want one line", err)
			}
		})
	}
}

// A file that marks the start (and end) of its one document is fine.
func TestDecodeOneMarkedDocument(t *testing.T) {
	var d doc
	if _, err := Decode("f.yaml", []byte("---\nname: a\n...\n"), &d); err != nil || d.Name != "a" {
		t.Fatalf("Decode(---, name: a, ...) = %v, name %q; want no error, name a", err, d.Name)
	}
}

func TestLocate(t *testing.T) {
	var d doc
	dc, err := Decode("f.yaml", []byte("name: a\npeers:\n  x: {port: 0}\nlist:\n  - port: 1\n  - port: 0\n"), &d)
	if err != nil {
		t.Fatal(err)
	}
	got := dc.Locate(errors.Join(
		Errorf("peers.x.port", "0: out of range"),
		Errorf("list[1].port", "0: out of range"),
		Errorf("missing", "required"),
		errors.New("not about a field"),
	)).Error()
	want := "f.yaml:3: peers.x.port: 0: out of range\nf.yaml:6: list[1].port: 0: out of range\nf.yaml: missing: required\nf.yaml: not about a field"
	if got != want {
		t.Errorf("Locate =\n%s\nwant\n%s", got, want)
	}
}
