package mail

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	"golang.org/x/crypto/argon2"
)

// User is a mail user as the cluster keeps it: the full address, the
// password's hash in Dovecot's notation ("{ARGON2ID}$argon2id$..."), and
// a quota (0: none).
type User struct {
	Name     string `json:"name"`
	Hash     string `json:"hash,omitempty"`
	QuotaMiB int    `json:"quota_mib,omitempty"`
}

// Alias delivers mail for From to every address of To (local users or
// addresses elsewhere).
type Alias struct {
	From string   `json:"from"`
	To   []string `json:"to"`
}

// Argon2id parameters of new hashes, which Dovecot verifies through
// libsodium: OWASP's 19 MiB and 2 passes. Every login pays them in
// Dovecot's auth process: with libsodium's 64 MiB "interactive" limits,
// an IMAPS login in the lab's TCG guests took 2.4 s (median of 20), and
// four clients logging in at once lost Dovecot's auth server.
const (
	argonTime    = 2
	argonMemory  = 19 << 10 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// MinPasswordLen is the shortest password a user may have.
const MinPasswordLen = 10

// HashPassword returns password's ARGON2ID hash in Dovecot's notation.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("mail: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("{ARGON2ID}$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword refuses a password a user should not have: empty, shorter
// than MinPasswordLen, one character repeated, or the address or its
// local part. The error never repeats the password.
func CheckPassword(user, password string) error {
	local, _, _ := strings.Cut(user, "@")
	switch {
	case password == "":
		return fmt.Errorf("the password for %s is empty", user)
	case len([]rune(password)) < MinPasswordLen:
		return fmt.Errorf("the password for %s is too short: %d characters, want at least %d", user, len([]rune(password)), MinPasswordLen)
	case strings.Count(password, password[:1]) == len(password):
		return fmt.Errorf("the password for %s is one character repeated", user)
	case strings.EqualFold(password, user) || strings.EqualFold(password, local):
		return fmt.Errorf("the password for %s is its own user name", user)
	case strings.ContainsAny(password, "\r\n\x00"):
		return fmt.Errorf("the password for %s holds a line break or NUL", user)
	}
	return nil
}

// hashSchemes are the stored-hash schemes an import keeps as they are:
// Dovecot verifies each (docs/mail.md, "Users, aliases and domains").
var hashSchemes = []string{"ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "SSHA512", "PBKDF2"}

// ImportedHash turns a passwd-file password field into a stored hash:
// {PLAIN} and {CLEAR} passwords are checked and hashed, a hash of a
// strong scheme is kept, anything else is refused.
func ImportedHash(user, field string) (string, error) {
	if !strings.HasPrefix(field, "{") || !strings.Contains(field, "}") {
		return "", fmt.Errorf("user %s: the password has no {SCHEME} prefix", user)
	}
	scheme, rest, _ := strings.Cut(strings.TrimPrefix(field, "{"), "}")
	scheme = strings.ToUpper(scheme)
	switch {
	case scheme == "PLAIN" || scheme == "CLEAR":
		if err := CheckPassword(user, rest); err != nil {
			return "", err
		}
		return HashPassword(rest)
	case slices.Contains(hashSchemes, scheme) && rest != "":
		return "{" + scheme + "}" + rest, nil
	}
	return "", fmt.Errorf("user %s: scheme {%s} is not one tandem keeps (%s, or {PLAIN} to be hashed)", user, scheme, strings.Join(hashSchemes, ", "))
}

// ParseAddress checks an address (user@domain, lower case) and returns
// its parts.
func ParseAddress(s string) (local, domain string, err error) {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "", "", fmt.Errorf("%q is not a mail address (user@domain)", s)
	}
	local, domain, _ = strings.Cut(s, "@")
	if s != strings.ToLower(s) {
		return "", "", fmt.Errorf("%q: use lower case", s)
	}
	if !localRE.MatchString(local) {
		return "", "", fmt.Errorf("%q: the user part may hold letters, digits, '.', '_' and '-' only", s)
	}
	if !domainRE.MatchString(domain) {
		return "", "", fmt.Errorf("%q: %q is not a DNS domain", s, domain)
	}
	return local, domain, nil
}
