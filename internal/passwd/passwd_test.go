package passwd

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

func TestHashCheck(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "grub.pbkdf2.sha512.100000.") || strings.ToUpper(h[len(prefix):]) != h[len(prefix):] {
		t.Errorf("hash %q is not in GRUB's notation", h)
	}
	if h2, _ := Hash("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horsE": false, "": false, "correct horse ": false} {
		if ok, err := Check(h, pw); ok != want || err != nil {
			t.Errorf("Check(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if _, err := Hash(""); err == nil {
		t.Error("an empty password was hashed")
	}
}

// TestGrubInterop: a hash GRUB's own grub-mkpasswd-pbkdf2 prints checks
// here, and GRUB's parser takes ours (grub-common is in scripts/apt).
func TestGrubInterop(t *testing.T) {
	testenv.RequireTool(t, "grub-mkpasswd-pbkdf2")
	out, err := exec.Command("sh", "-c", "printf 'tandem\\ntandem\\n' | grub-mkpasswd-pbkdf2 -c 10000").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-mkpasswd-pbkdf2: %v\n%s", err, out)
	}
	const said = "PBKDF2 hash of your password is "
	i := strings.Index(string(out), said)
	if i < 0 {
		t.Fatalf("no hash in %q", out)
	}
	h := strings.TrimSpace(string(out[i+len(said):]))
	if err := Valid(h); err != nil {
		t.Fatalf("GRUB's hash %q: %v", h, err)
	}
	for pw, want := range map[string]bool{"tandem": true, "Tandem": false} {
		if ok, err := Check(h, pw); ok != want || err != nil {
			t.Errorf("Check(GRUB's hash, %q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	ours, _ := Hash("tandem")
	if parts := strings.Split(ours, "."); len(parts) != 6 || len(parts[4]) != 128 || len(parts[5]) != 128 {
		t.Errorf("our hash %q has not GRUB's 64-byte salt and hash", ours)
	}
}

func TestValid(t *testing.T) {
	good, _ := Hash("x")
	if err := Valid(good); err != nil {
		t.Errorf("Valid(a new hash) = %v", err)
	}
	for _, bad := range []string{"", "hunter2", "$6$salt$hash", "grub.pbkdf2.sha512.10.AA.BB", "grub.pbkdf2.sha512.10000.ZZ.BB",
		"grub.pbkdf2.sha512.10000." + strings.Repeat("A", 64) + "." + strings.Repeat("B", 10), "grub.pbkdf2.sha256.10000.AA.BB"} {
		if err := Valid(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("Valid(%q) = %v, want ErrFormat", bad, err)
		}
		if ok, err := Check(bad, "x"); ok || err == nil {
			t.Errorf("Check(%q) = %v, %v; want an error", bad, ok, err)
		}
	}
}
