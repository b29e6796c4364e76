package mail

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/golden"
	"tandem/services/mail/mailtls"
)

// TestConfigGolden renders the container's configuration for a fixed
// domain, users and monitor password, and compares it with testdata/.
func TestConfigGolden(t *testing.T) {
	users := []User{{Name: "alice@example.test", Hash: "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"},
		{Name: "bob@example.org", Hash: "{SHA512-CRYPT}$6$x$y", QuotaMiB: 500}}
	aliases := []Alias{{From: "postmaster@example.test", To: []string{"alice@example.test"}},
		{From: "team@example.org", To: []string{"alice@example.test", "bob@example.org", "carol@elsewhere.test"}},
		{From: "away@example.org", To: []string{"someone@elsewhere.test"}}}
	c := config{Hostname: "mail.example.test", Domain: "example.test", Domains: []string{"example.org"}, Users: users, Aliases: aliases,
		MonitorPassword: "monitor-secret", Salt: []byte("fixedsalt123"),
		Listen: []string{"192.0.2.10"}, HeaderChecks: true, Rspamd: true,
		DKIM: []DKIMKey{{Domain: "example.test", Selector: "tandem20261202", Key: []byte("test key of example.test\n")},
			{Domain: "example.org", Selector: "tandem20261203", Key: []byte("test key of example.org\n")}},
		Settings: Settings{POP3: true, MessageSizeMiB: 20, Smarthost: "relay.example.net:587", SmarthostUser: "relay-user@example.test", SmarthostPassword: "relay secret:1",
			RelayNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/64")}}, TLS: mailtls.Pair{Chain: []byte("test chain\n"), Key: []byte("test key\n")}}
	for rel, data := range c.files() {
		path := filepath.Join("testdata", strings.ReplaceAll(rel, "/", "_"))
		golden.Check(t, path, data)
	}
}

func TestParseUsersErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice\n", "users:1: want USER[@example.test]:PASSWORD[:...] (Dovecot passwd-file)"},
		{"alice:\n", "users:1: want USER"},
		{"# c\nalice@other_test:{PLAIN}x\n", `users:2: user "alice@other_test": "other_test" is not a DNS domain`},
		{"tandem-monitor:{PLAIN}x\n", `users:1: user name "tandem-monitor" is not allowed`},
		{"a b:{PLAIN}x\n", `users:1: user name "a b" is not allowed`},
		{"alice:{PLAIN}long-enough-1\nALICE@example.test:{PLAIN}long-enough-2\n", "users:2: user alice@example.test is already on line 1"},
		{"alice:{PLAIN}short\n", "users:1: the password for alice@example.test is too short: 5 characters, want at least 10"},
		{"alice:{MD5}abc\n", "users:1: user alice@example.test: scheme {MD5} is not one tandem keeps"},
		{"alice:nobrace\n", "users:1: user alice@example.test: the password has no {SCHEME} prefix"},
	} {
		_, err := ParseUsersFile(strings.NewReader(c.in), "users", "example.test")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ParseUsersFile(%q) error = %v, want prefix %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "long-enough") {
			t.Errorf("the error repeats a password: %v", err)
		}
	}
	users, err := ParseUsersFile(strings.NewReader("# users\nalice:{PLAIN}correct horse\nBob@Example.Test:{SHA512-CRYPT}$6$x$y::::::\n\n"), "users", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "alice@example.test" || !strings.HasPrefix(users[0].Hash, "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$") ||
		users[1].Name != "bob@example.test" || users[1].Hash != "{SHA512-CRYPT}$6$x$y" {
		t.Errorf("ParseUsersFile = %+v", users)
	}
}

func TestFromParams(t *testing.T) {
	w, err := FromParams(map[string]string{"root": "/srv/mail", "domain": "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Kind != "postfix-dovecot" || w.Hostname() != "mail.example.com" || w.Users != DefaultUsers || w.Address != DefaultAddress || w.ZimbraUser != "zimbra" {
		t.Errorf("FromParams defaults = %+v", w)
	}
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"root": "/srv/mail"}, `mail: param domain: "" is not a lower-case DNS domain`},
		{map[string]string{"root": "srv", "domain": "example.com"}, `mail: param root: "srv" must be a clean absolute directory`},
		{map[string]string{"root": "/srv/../x", "domain": "example.com"}, `mail: param root: "/srv/../x" must be a clean absolute directory`},
		{map[string]string{"domain": "example.com"}, `mail: param root: "" must be`},
		{map[string]string{"root": "/srv/mail", "domain": "Example.com"}, `mail: param domain: "Example.com" is not a lower-case DNS domain`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "service": "mail.x"}, `mail: param service: "mail.x" is not a lower-case host label`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "kind": "exim"}, `mail: param kind: "exim" is not postfix-dovecot or zimbra`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "users": "users"}, `mail: param users: "users" is not an absolute path`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "address": "localhost"}, `mail: param address: "localhost" is not an IP address`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "template": "t.zst"}, `mail: param template: "t.zst" is not an absolute path`},
		{map[string]string{"root": "/srv/mail", "domain": "example.com", "rot": "x"}, `mail: unknown params rot (expected: kind, root, template`},
		{map[string]string{"root": "/" + strings.Repeat("x", 100), "domain": "example.com"}, `mail: param root: "/xxx`},
	} {
		_, err := FromParams(c.params)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("FromParams(%v) error = %v, want prefix %q", c.params, err, c.want)
		}
	}
}
