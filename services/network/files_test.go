package network

import (
	"os"
	"path/filepath"
	"testing"

	"tandem/internal/nodeconfig"
)

func TestFiles(t *testing.T) {
	cfg := &nodeconfig.Config{Hostname: "n1", Network: nodeconfig.Network{
		Nameservers: []string{"10.0.0.1", "10.0.0.2"}, Search: []string{"a.org", "b.org"},
	}}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"hosts without cluster", string(hostsFile(cfg)), header + "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tn1\n"},
		{"resolv with lease", string(resolvConf(cfg, []string{"10.0.0.2", "10.0.0.3"})), header + "search a.org b.org\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s =\n%q\nwant\n%q", tc.name, tc.got, tc.want)
		}
	}
}

func TestWriteIfChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	for i, want := range []bool{true, false} {
		changed, err := writeIfChanged(p, []byte("x\n"))
		if err != nil || changed != want {
			t.Errorf("writeIfChanged #%d = %v, %v; want %v, nil", i, changed, err, want)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "x\n" {
		t.Errorf("file = %q, want x", b)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".f.tmp*")); len(m) != 0 {
		t.Errorf("temp files left: %v", m)
	}
}
