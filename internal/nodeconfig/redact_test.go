package nodeconfig

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"tandem/internal/passwd"
)

// TestRedact: the copy for the confined daemons loads to the same config
// with the console password and the pairing codes gone, and none of
// their text is left in it; a bad config is refused, not copied.
func TestRedact(t *testing.T) {
	hash, err := passwd.Hash("console secret")
	if err != nil {
		t.Fatal(err)
	}
	const codeB, codeQ = "ABCD-EFGH-JKLM-NPQR", "STUV-WXYZ-2345-6789"
	founder := edit(t, "  lease_ttl: 3s", "  lease_ttl: 3s\n  pairing:\n    founder: a\n    codes: {b: "+codeB+", q: "+codeQ+"}") +
		"console:\n  password: " + hash + "\n"
	joiner := edit(t, "hostname: a", "hostname: b", "  lease_ttl: 3s", "  lease_ttl: 3s\n  pairing: {founder: a, code: "+codeB+"}")
	for _, tc := range []struct{ name, in string }{{"founder", founder}, {"joiner", joiner}, {"no secrets", clusterNode}} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := Load(strings.NewReader(tc.in), "n.yaml")
			if err != nil {
				t.Fatalf("Load(\n%s) = %v", tc.in, err)
			}
			out, err := Redact([]byte(tc.in), "n.yaml")
			if err != nil {
				t.Fatalf("Redact = %v", err)
			}
			for _, secret := range []string{hash, codeB, codeQ, "codes", "password"} {
				if bytes.Contains(out, []byte(secret)) {
					t.Errorf("Redact left %q in:\n%s", secret, out)
				}
			}
			got, err := Load(bytes.NewReader(out), "copy.yaml")
			if err != nil {
				t.Fatalf("the copy does not load: %v\n%s", err, out)
			}
			want.Console.Password = ""
			if want.Cluster.Pairing != nil {
				want.Cluster.Pairing.Codes, want.Cluster.Pairing.Code = nil, ""
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the copy loads to\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	bad := strings.Replace(founder, "hostname: a", "hostname: A", 1)
	if out, err := Redact([]byte(bad), "n.yaml"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "n.yaml:") {
		t.Errorf("Redact(an invalid config) = %q, %v; want ErrInvalid naming n.yaml", out, err)
	}
}
