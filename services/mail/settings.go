package mail

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Settings are the mail service's site settings, kept once for the
// cluster (tandemctl mail config set|get, docs/mail.md "Site settings").
// The zero value is the defaults.
type Settings struct {
	// MessageSizeMiB is the largest message accepted; 0: DefaultMessageSizeMiB.
	MessageSizeMiB int `json:"message_size_mib,omitempty"`
	// RelayNetworks may relay through port 25 without logging in, as
	// loopback may (Postfix's mynetworks).
	RelayNetworks []netip.Prefix `json:"relay_networks,omitempty"`
	// POP3 serves POP3 (110, STARTTLS) and POP3S (995) besides IMAP.
	POP3 bool `json:"pop3,omitempty"`
	// Smarthost, host or host:port, takes all outbound mail instead of
	// the recipients' MX.
	Smarthost string `json:"smarthost,omitempty"`
	// SmarthostUser and SmarthostPassword log in to the smarthost (SMTP
	// AUTH), over TLS only, when both are set. The password is kept as it
	// is, since Postfix must send it; Get never shows it.
	SmarthostUser     string `json:"smarthost_user,omitempty"`
	SmarthostPassword string `json:"smarthost_password,omitempty"`
}

// DefaultMessageSizeMiB is the message size limit unless set.
const DefaultMessageSizeMiB = 50

// Setting names.
const (
	SetMessageSize   = "message_size_limit"
	SetRelayNetworks = "relay_networks"
	SetPOP3          = "pop3"
	SetSmarthost     = "smarthost"
	SetSmarthostUser = "smarthost_user"
	// SetSmarthostPassword is a secret: tandemctl asks for it, never
	// takes it on its command line, and Get shows only whether it is set.
	SetSmarthostPassword = "smarthost_password"
)

// SettingNames are the settings' names, in the order Get lists them.
var SettingNames = []string{SetMessageSize, SetRelayNetworks, SetPOP3, SetSmarthost, SetSmarthostUser, SetSmarthostPassword}

// secretSet is what Get shows for a secret that is set.
const secretSet = "(set)"

// Limits of the settings. A relay network is at most a /16 (IPv6 a /48):
// whatever is set, the service must never relay for the world.
const (
	maxMessageSizeMiB = 1024
	minRelayBits4     = 16
	minRelayBits6     = 48
)

// Get returns every setting as tandemctl shows it.
func (s Settings) Get() map[string]string {
	nets := make([]string, len(s.RelayNetworks))
	for i, p := range s.RelayNetworks {
		nets[i] = p.String()
	}
	return map[string]string{
		SetMessageSize:       strconv.Itoa(s.messageSize()) + "M",
		SetRelayNetworks:     strings.Join(nets, ","),
		SetPOP3:              strconv.FormatBool(s.POP3),
		SetSmarthost:         s.Smarthost,
		SetSmarthostUser:     s.SmarthostUser,
		SetSmarthostPassword: shownSecret(s.SmarthostPassword),
	}
}

// shownSecret is what Get shows of a secret: whether it is set.
func shownSecret(v string) string {
	if v == "" {
		return ""
	}
	return secretSet
}

func (s Settings) messageSize() int {
	if s.MessageSizeMiB == 0 {
		return DefaultMessageSizeMiB
	}
	return s.MessageSizeMiB
}

// Set changes one setting from its text; the error names the setting and
// says what is wrong, and s is unchanged then. An empty value resets it.
func (s *Settings) Set(name, value string) error {
	next := *s
	var err error
	switch name {
	case SetMessageSize:
		next.MessageSizeMiB, err = parseSize(value)
	case SetRelayNetworks:
		next.RelayNetworks, err = parseRelayNetworks(value)
	case SetPOP3:
		switch value {
		case "true", "false", "":
			next.POP3 = value == "true"
		default:
			err = fmt.Errorf("%q is not true or false", value)
		}
	case SetSmarthost:
		next.Smarthost, err = parseSmarthost(value)
	case SetSmarthostUser:
		next.SmarthostUser, err = parseCredential(value, ":")
	case SetSmarthostPassword:
		next.SmarthostPassword, err = parseCredential(value, "")
	default:
		return fmt.Errorf("no setting %q (the settings: %s)", name, strings.Join(SettingNames, ", "))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	*s = next
	return nil
}

func parseSize(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(v, "M"), "MiB"))
	if err != nil || n < 1 || n > maxMessageSizeMiB {
		return 0, fmt.Errorf("%q: want MiB from 1 to %d (e.g. 50M)", v, maxMessageSizeMiB)
	}
	return n, nil
}

func parseRelayNetworks(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network (CIDR, e.g. 192.0.2.0/24)", f)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%s has host bits set: the network is %s", f, p.Masked())
		}
		a := p.Addr()
		switch {
		case a.Is4() && p.Bits() < minRelayBits4, a.Is6() && !a.Is4In6() && p.Bits() < minRelayBits6:
			return nil, fmt.Errorf("%s is too large to trust with relaying: at most a /%d (IPv6 a /%d)", f, minRelayBits4, minRelayBits6)
		case a.IsMulticast() || a.IsUnspecified():
			return nil, fmt.Errorf("%s is not a network of hosts", f)
		case a.IsLoopback():
			return nil, fmt.Errorf("%s: loopback may always relay", f)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func parseSmarthost(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	host, port := v, "25"
	if h, p, err := net.SplitHostPort(v); err == nil {
		host, port = h, p
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port %q is not 1 to 65535", v, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() {
			return "", fmt.Errorf("%q: %s is not a host to relay to", v, host)
		}
	} else if !domainRE.MatchString(host) {
		return "", fmt.Errorf("%q: %q is neither an IPv4 address nor a DNS name", v, host)
	}
	return net.JoinHostPort(host, port), nil
}

// maxCredential bounds the smarthost's user name and password.
const maxCredential = 256

// parseCredential checks a smarthost user name or password as Postfix's
// password table holds it: one line "[host]:port user:password", so no
// control character, no space at either end, and in the user name none
// of forbidden (its colon ends the name). The error never quotes v.
func parseCredential(v, forbidden string) (string, error) {
	switch {
	case len(v) > maxCredential:
		return "", fmt.Errorf("longer than %d bytes", maxCredential)
	case strings.TrimSpace(v) != v:
		return "", errors.New("begins or ends with white space")
	case strings.ContainsFunc(v, unicode.IsControl):
		return "", errors.New("holds a control character")
	case forbidden != "" && strings.ContainsAny(v, forbidden+" \t"):
		return "", fmt.Errorf("holds white space or one of %q", forbidden)
	}
	return v, nil
}

// smarthostAuth reports whether outbound mail logs in to the smarthost.
func (s Settings) smarthostAuth() bool {
	return s.Smarthost != "" && s.SmarthostUser != "" && s.SmarthostPassword != ""
}

// relayHost is Postfix's relayhost for the smarthost: brackets, so
// Postfix does not look up an MX for it.
func (s Settings) relayHost() string {
	if s.Smarthost == "" {
		return ""
	}
	h, p, _ := net.SplitHostPort(s.Smarthost)
	return "[" + h + "]:" + p
}
