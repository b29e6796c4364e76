package mail

import (
	"strings"
	"testing"
)

func TestSettings(t *testing.T) {
	var s Settings
	if got := s.Get(); got[SetMessageSize] != "50M" || got[SetPOP3] != "false" || got[SetRelayNetworks] != "" || got[SetSmarthost] != "" {
		t.Errorf("defaults = %v", got)
	}
	for _, c := range [][2]string{
		{SetMessageSize, "20M"}, {SetRelayNetworks, "198.51.100.0/24, 2001:db8::/64,198.51.100.0/24"},
		{SetPOP3, "true"}, {SetSmarthost, "relay.example.net:587"},
	} {
		if err := s.Set(c[0], c[1]); err != nil {
			t.Fatalf("Set(%s, %s) = %v", c[0], c[1], err)
		}
	}
	got := s.Get()
	if got[SetMessageSize] != "20M" || got[SetRelayNetworks] != "198.51.100.0/24,2001:db8::/64" || got[SetPOP3] != "true" || got[SetSmarthost] != "relay.example.net:587" {
		t.Errorf("after Set: %v", got)
	}
	if err := s.Set(SetSmarthost, "192.0.2.25"); err != nil || s.relayHost() != "[192.0.2.25]:25" {
		t.Errorf("smarthost without a port: %v, relayhost %q", err, s.relayHost())
	}
	before := s
	for _, c := range []struct{ name, value, want string }{
		{"size", "1", `no setting "size"`},
		{SetMessageSize, "0", "message_size_limit: \"0\": want MiB from 1 to 1024"},
		{SetMessageSize, "2G", "want MiB"},
		{SetRelayNetworks, "0.0.0.0/0", "too large to trust with relaying"},
		{SetRelayNetworks, "10.0.0.0/8", "too large to trust with relaying: at most a /16"},
		{SetRelayNetworks, "2001:db8::/32", "too large"},
		{SetRelayNetworks, "10.1.2.3/16", "host bits set: the network is 10.1.0.0/16"},
		{SetRelayNetworks, "127.0.0.0/16", "loopback may always relay"},
		{SetRelayNetworks, "my-lan", `"my-lan" is not a network`},
		{SetPOP3, "yes", `"yes" is not true or false`},
		{SetSmarthost, "relay.example.net:0", "port \"0\""},
		{SetSmarthost, "127.0.0.1:25", "not a host to relay to"},
		{SetSmarthost, "bad_host", "neither an IPv4 address nor a DNS name"},
		{SetSmarthostUser, "relay:user", `smarthost_user: holds white space or one of ":"`},
		{SetSmarthostUser, "relay user", "holds white space"},
		{SetSmarthostPassword, " secret", "smarthost_password: begins or ends with white space"},
		{SetSmarthostPassword, "sec\nret", "holds a control character"},
		{SetSmarthostPassword, strings.Repeat("p", 257), "longer than 256 bytes"},
	} {
		err := s.Set(c.name, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Set(%s, %q) = %v, want %q", c.name, c.value, err, c.want)
			continue
		}
		if c.name == SetSmarthostPassword && strings.Contains(err.Error(), strings.TrimSpace(c.value)) {
			t.Errorf("the error for a bad password shows it: %v", err)
		}
	}
	if s.Get()[SetRelayNetworks] != before.Get()[SetRelayNetworks] || s.Smarthost != before.Smarthost {
		t.Error("a refused Set changed the settings")
	}
	if err := s.Set(SetMessageSize, ""); err != nil || s.Get()[SetMessageSize] != "50M" {
		t.Errorf("reset to the default: %v, %v", err, s.Get())
	}

	// The smarthost's login: used once user and password are set, the
	// password never shown, and outbound TLS then required.
	c := config{Settings: s}
	if err := c.Settings.Set(SetSmarthostUser, "relay@example.test"); err != nil {
		t.Fatal(err)
	}
	if c.smarthostPasswordFile() != nil || c.outboundTLS() != "may" {
		t.Errorf("a user without a password: table %q, TLS %s; want none and may", c.smarthostPasswordFile(), c.outboundTLS())
	}
	if err := c.Settings.Set(SetSmarthostPassword, "pass word:1"); err != nil {
		t.Fatal(err)
	}
	if got := c.Settings.Get(); got[SetSmarthostPassword] != "(set)" || got[SetSmarthostUser] != "relay@example.test" {
		t.Errorf("Get with a login = %v", got)
	}
	if got, want := string(c.smarthostPasswordFile()), "[192.0.2.25]:25 relay@example.test:pass word:1\n"; got != want || c.outboundTLS() != "encrypt" {
		t.Errorf("table %q, TLS %s; want %q and encrypt", got, c.outboundTLS(), want)
	}
	if !strings.Contains(c.relay(), "smtp_sasl_auth_enable = yes") || !secretFile(smarthostPasswords) {
		t.Errorf("relay() = %q, secret %v", c.relay(), secretFile(smarthostPasswords))
	}
	if err := c.Settings.Set(SetSmarthost, ""); err != nil || c.smarthostPasswordFile() != nil || c.relay() != "" {
		t.Errorf("without a smarthost: %v, table %q, relay %q", err, c.smarthostPasswordFile(), c.relay())
	}
}
