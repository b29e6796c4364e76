package pid1

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/passwd"
)

func TestWriteGrubPassword(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password.cfg")
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	h, err := passwd.Hash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeGrubPassword(p, h, logf); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || !strings.Contains(string(b), "set superusers=\"root\"\npassword_pbkdf2 root "+h+"\n") {
		t.Fatalf("password.cfg = %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("password.cfg mode %v, want 0600", fi.Mode().Perm())
	}
	n := len(logs)
	if err := writeGrubPassword(p, h, logf); err != nil || len(logs) != n {
		t.Errorf("the same hash again: %v, logged %v (want no rewrite)", err, logs[n:])
	}
	if err := writeGrubPassword(p, "grub.pbkdf2.sha512.10000.X\"; unset superusers; #.Y", logf); err == nil {
		t.Error("a hash of the wrong form was written into GRUB's config")
	}
	if b2, _ := os.ReadFile(p); !bytes.Equal(b, b2) {
		t.Error("a refused hash changed password.cfg")
	}
	if err := writeGrubPassword(p, "", logf); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("password.cfg after the password went: %v, want removed", err)
	}
	if err := writeGrubPassword(p, "", logf); err != nil {
		t.Errorf("no password and no file: %v", err)
	}
}

func TestRescueLogin(t *testing.T) {
	h, err := passwd.Hash("open sesame")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(consoleEnv, h)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString("guess\r\nopen sesame\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var out bytes.Buffer
	if err := RescueLogin(r, &out, 0); err != nil {
		t.Fatalf("RescueLogin = %v\n%s", err, out.String())
	}
	if got := out.String(); strings.Count(got, "console password (not shown):") != 2 || !strings.Contains(got, "wrong password") || !strings.HasSuffix(got, "root shell\n") {
		t.Errorf("console:\n%s\nwant a refusal, then the shell", got)
	}
	// Input ends before the right password: no shell.
	r2, w2, _ := os.Pipe()
	if _, err := w2.WriteString("guess\n"); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	if err := RescueLogin(r2, &out, 0); err == nil {
		t.Error("RescueLogin let a shell in without the password")
	}
	t.Setenv(consoleEnv, "")
	if err := RescueLogin(r2, &out, 0); err == nil {
		t.Error("RescueLogin without a console password let a shell in")
	}
}
