package settings

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

func TestLookupOrder(t *testing.T) {
	dir := t.TempDir()
	perm, img := filepath.Join(dir, "perm.yaml"), filepath.Join(dir, "image.yaml")
	testenv.WriteFile(t, perm, []byte("hostname: from-perm\nrole: data\n"), 0o600)
	testenv.WriteFile(t, img, []byte("hostname: from-image\nrole: arbitrator\nconsole: ttyS0\n"), 0o644)
	s, err := Load(strings.NewReader("BOOT_IMAGE=/vmlinuz console=ttyS0 tandem.hostname=from-cmdline tandem.rescue quiet\n"), perm, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, val, src string }{
		{"hostname", "from-cmdline", "cmdline"},
		{"rescue", "1", "cmdline"},
		{"role", "data", "perm"},
		{"console", "ttyS0", "image"},
	} {
		if v, _ := s.Get(c.key); v != c.val || s.Source(c.key) != c.src {
			t.Errorf("Get(%q) = %q from %q, want %q from %q", c.key, v, s.Source(c.key), c.val, c.src)
		}
	}
	want := []string{"TANDEM_CONSOLE=ttyS0", "TANDEM_HOSTNAME=from-cmdline", "TANDEM_RESCUE=1", "TANDEM_ROLE=data"}
	if got := s.Env(); !reflect.DeepEqual(got, want) {
		t.Errorf("Env() = %v, want %v", got, want)
	}
}

func TestMissingFilesAreFine(t *testing.T) {
	s, err := Load(strings.NewReader(""), "/nonexistent/a", "/nonexistent/b")
	if err != nil || s.GetOr("hostname", "def") != "def" {
		t.Fatalf("Load with no files = %v, %v", s, err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := ParseCmdline(strings.NewReader("tandem.Bad-Key=1")); err == nil || !strings.Contains(err.Error(), "Bad-Key") {
		t.Errorf("ParseCmdline(bad key) = %v, want error naming it", err)
	}
	if _, err := ParseFile("/perm/settings.yaml", strings.NewReader("hostname: [a, b]\n")); err == nil || !strings.Contains(err.Error(), "/perm/settings.yaml") {
		t.Errorf("ParseFile(list value) = %v, want error naming the file", err)
	}
}
