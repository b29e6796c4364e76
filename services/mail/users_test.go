package mail

import (
	"strings"
	"testing"
)

func TestCheckPassword(t *testing.T) {
	for pw, want := range map[string]string{
		"":                   "is empty",
		"qz7":                "too short: 3 characters",
		"zzzzzzzzzzzz":       "one character repeated",
		"alice@example.test": "its own user name",
		"ALICE":              "too short",
		"aliceALICEx\n":      "line break",
		"correct horse":      "",
	} {
		err := CheckPassword("alice@example.test", pw)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckPassword(%q) = %v, want %q", pw, err, want)
		}
		if err != nil && pw != "" && strings.Contains(err.Error(), pw) && pw != "alice@example.test" {
			t.Errorf("CheckPassword(%q)'s error repeats the password: %v", pw, err)
		}
	}
	if err := CheckPassword("alice@example.test", "aliceAlice"); err != nil {
		t.Errorf("a 10-character password = %v", err)
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.test":       "",
		"a.b-c_d@sub.example.test": "",
		"alice":                    "is not a mail address",
		"Alice <a@example.test>":   "is not a mail address",
		"Alice@example.test":       "use lower case",
		"a+b@example.test":         "letters, digits",
		"alice@localhost":          "is not a DNS domain",
	} {
		_, _, err := ParseAddress(in)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseAddress(%q) = %v, want %q", in, err, want)
		}
	}
}

// HashPassword's form is Dovecot's {ARGON2ID} with a fresh salt; that
// Dovecot verifies it, TestWorkload shows (its users' hashes are these).
func TestHashPassword(t *testing.T) {
	a, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := HashPassword("correct horse")
	if !strings.HasPrefix(a, "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$") || a == b || strings.Contains(a, "correct") {
		t.Errorf("HashPassword = %q, %q", a, b)
	}
}
