package passwd

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

func TestReadFromStdin(t *testing.T) {
	for in, want := range map[string]string{"s3cret\n": "", "s3cret": "", "\n": "empty password", "": "read the password from stdin"} {
		f := filepath.Join(t.TempDir(), "in")
		testenv.WriteFile(t, f, []byte(in), 0o600)
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := Read(r, io.Discard, "password")
		r.Close()
		if want != "" {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Read(%q) = %q, %v; want an error with %q", in, pw, err, want)
			}
			continue
		}
		if err != nil || pw != "s3cret" {
			t.Errorf("Read(%q) = %q, %v", in, pw, err)
		}
	}
}
