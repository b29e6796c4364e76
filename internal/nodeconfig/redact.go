package nodeconfig

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// secrets are the fields of a node config that only root may read: the
// console password's hash and the pairing codes. The confined daemons
// (tandem-dns, tandem-time) read the config without them (Redact).
var secrets = [][]string{
	{"console", "password"},
	{"cluster", "pairing", "codes"},
	{"cluster", "pairing", "code"},
}

// Redact returns the node config in data without its secrets, after
// checking it as Load does (name prefixes the errors): the rest of the
// file, comments included, is kept. What it returns loads as data does,
// with the secrets' fields empty.
func Redact(data []byte, name string) ([]byte, error) {
	if _, err := Load(bytes.NewReader(data), name); err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalid, err)
	}
	if len(root.Content) == 0 {
		return data, nil // all defaults (where Load accepts that): no secrets
	}
	for _, path := range secrets {
		deleteKey(root.Content[0], path)
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("%s: redact: %w", name, err)
	}
	// An anchor on a secret that is aliased elsewhere would leave the
	// alias dangling: the copy must still load.
	if _, err := Load(bytes.NewReader(out), name+" (without its secrets)"); err != nil {
		return nil, err
	}
	return out, nil
}

// deleteKey removes the key at path from the mapping n, if it is there.
func deleteKey(n *yaml.Node, path []string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch {
		case n.Content[i].Value != path[0]:
		case len(path) == 1:
			n.Content = append(n.Content[:i], n.Content[i+2:]...)
			return
		default:
			deleteKey(n.Content[i+1], path[1:])
			return
		}
	}
}
