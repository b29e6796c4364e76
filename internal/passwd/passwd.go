// Package passwd makes and checks the console password's hash: PBKDF2 with
// HMAC-SHA512 in GRUB's own notation (grub-mkpasswd-pbkdf2), so the one
// hash in a node config both locks GRUB's menu (password_pbkdf2) and
// opens PID 1's rescue shell.
//
//	grub.pbkdf2.sha512.ITERATIONS.SALT.HASH   (SALT and HASH in upper-case hex)
package passwd

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Parameters of a new hash: grub-mkpasswd-pbkdf2's salt and hash sizes,
// and more iterations than its 10000 (a console login is rare; a guess
// should cost).
const (
	Iterations = 100000
	saltLen    = 64
	hashLen    = 64
	prefix     = "grub.pbkdf2.sha512."
)

// ErrFormat says a string is not such a hash.
var ErrFormat = errors.New("not a PBKDF2-SHA512 hash in GRUB's notation (grub.pbkdf2.sha512.ITERATIONS.SALT.HASH, as tandem passwd prints it)")

// Hash returns the hash of password.
func Hash(password string) (string, error) {
	if password == "" {
		return "", errors.New("passwd: empty password")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("passwd: %w", err)
	}
	return format(Iterations, salt, password)
}

func format(iter int, salt []byte, password string) (string, error) {
	h, err := pbkdf2.Key(sha512.New, password, salt, iter, hashLen)
	if err != nil {
		return "", fmt.Errorf("passwd: %w", err)
	}
	return fmt.Sprintf("%s%d.%s.%s", prefix, iter, strings.ToUpper(hex.EncodeToString(salt)), strings.ToUpper(hex.EncodeToString(h))), nil
}

type parsed struct {
	iter       int
	salt, hash []byte
}

func parse(s string) (parsed, error) {
	parts := strings.Split(strings.TrimPrefix(s, prefix), ".")
	if !strings.HasPrefix(s, prefix) || len(parts) != 3 {
		return parsed{}, ErrFormat
	}
	iter, err := strconv.Atoi(parts[0])
	if err != nil || iter < 1000 || iter > 10_000_000 {
		return parsed{}, fmt.Errorf("%w: iterations %q: want 1000 to 10000000", ErrFormat, parts[0])
	}
	salt, err1 := hex.DecodeString(parts[1])
	hash, err2 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(salt) < 16 || len(hash) < 32 {
		return parsed{}, fmt.Errorf("%w: salt and hash must be hex, at least 16 and 32 bytes", ErrFormat)
	}
	return parsed{iter, salt, hash}, nil
}

// Valid checks a hash's form.
func Valid(hash string) error {
	_, err := parse(hash)
	return err
}

// Check reports whether password matches hash.
func Check(hash, password string) (bool, error) {
	p, err := parse(hash)
	if err != nil {
		return false, err
	}
	h, err := pbkdf2.Key(sha512.New, password, p.salt, p.iter, len(p.hash))
	if err != nil {
		return false, fmt.Errorf("passwd: %w", err)
	}
	return subtle.ConstantTimeCompare(h, p.hash) == 1, nil
}
