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
		{"not a mapping", "- a\n", "f.yaml:1: expected a mapping"},
		{"empty", "# nothing\n", "f.yaml: empty file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d doc
			_, err := Decode("f.yaml", []byte(c.yaml), &d)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %v, want an ErrInvalid starting with %s", err, c.want)
			}
		})
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
