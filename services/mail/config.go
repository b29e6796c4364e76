package mail

import (
	"bufio"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strings"

	"tandem/internal/mailroot"
)

// MonitorUser is the IMAP account the monitor logs in as; it receives no
// mail (Postfix does not list it) and its password is random per root.
const MonitorUser = "tandem-monitor"

// lmtpSocket is Dovecot's LMTP listener inside Postfix's queue, where
// Postfix's lmtp client reaches it as private/dovecot-lmtp.
const lmtpSocket = "/var/spool/postfix/private/dovecot-lmtp"

// config is what the container's configuration files are rendered from.
type config struct {
	Hostname, Domain string
	Users            []user // from the users file, monitor account excluded
	MonitorPassword  string
	Salt             []byte // for the monitor's password hash; random unless a test fixes it
}

// files returns the configuration files to write into the container root,
// by path below it.
func (c config) files() map[string][]byte {
	return map[string][]byte{
		"etc/postfix/main.cf":      []byte(c.mainCF()),
		"etc/postfix/master.cf":    []byte(masterCF),
		"etc/postfix/vmailbox":     []byte(c.vmailbox()),
		"etc/dovecot/dovecot.conf": []byte(c.dovecotConf()),
		"etc/dovecot/users":        []byte(c.passwdFile()),
		"etc/mailname":             []byte(c.Hostname + "\n"),
		"etc/hostname":             []byte(c.Hostname + "\n"),
		"etc/hosts":                []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s %s\n", c.Hostname, strings.SplitN(c.Hostname, ".", 2)[0])),
	}
}

const header = "# Written by tandem (services/mail) at every start: edits are lost.\n"

// mainCF is Postfix's main.cf: mail for the domain's listed users goes
// to Dovecot over LMTP, everything else for the domain is rejected, relay
// only from loopback. Postfix's queue-file fsync before 250 is its default
// and is never turned off. The queue is retried every 10 s (Postfix's
// defaults: 5 min, backing off to over an hour): the only transport is the
// local LMTP, and after a failover mail that the old owner deferred (Dovecot
// not up yet, a crash in mid-delivery) must reach the mailbox in seconds;
// the end-to-end test found one such message still queued minutes later.
func (c config) mainCF() string {
	return header + `compatibility_level = 3.6
myhostname = ` + c.Hostname + `
mydomain = ` + c.Domain + `
myorigin = $mydomain
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
inet_interfaces = all
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_reject_unlisted_recipient = yes
virtual_mailbox_domains = ` + c.Domain + `
virtual_mailbox_maps = texthash:/etc/postfix/vmailbox
virtual_transport = lmtp:unix:private/dovecot-lmtp
biff = no
append_dot_mydomain = no
readme_directory = no
maillog_file = /dev/stdout
message_size_limit = 52428800
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 5m
`
}

// masterCF runs every Postfix service unchrooted (the container is the
// confinement) and the log service postlogd, which writes maillog_file.
const masterCF = header + `# service type  private unpriv  chroot  wakeup  maxproc command
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

func (c config) vmailbox() string {
	var b strings.Builder
	b.WriteString(header)
	for _, u := range c.Users {
		fmt.Fprintf(&b, "%s\tOK\n", u.Name)
	}
	return b.String()
}

// dovecotConf is Dovecot's whole configuration (Debian's conf.d is not
// read): IMAP on 143 and LMTP on a socket in Postfix's queue, maildirs
// under mailroot.VmailDir owned by vmail. mail_fsync = always: a message
// is on disk, directory entry included, before LMTP says 250 and Postfix
// drops its queue file, so a crash just after never loses it.
func (c config) dovecotConf() string {
	return header + fmt.Sprintf(`protocols = imap lmtp
listen = *, ::
base_dir = /run/dovecot
state_dir = /var/lib/dovecot
log_path = /dev/stderr
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = %[1]d
last_valid_uid = %[1]d
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:~/Maildir
mail_fsync = always
postmaster_address = postmaster@%[2]s
hostname = %[3]s
passdb {
  driver = passwd-file
  args = username_format=%%Lu /etc/dovecot/users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=%[4]s/%%d/%%n
}
service lmtp {
  unix_listener %[5]s {
    user = postfix
    group = postfix
    mode = 0600
  }
}
service imap-login {
  inet_listener imap {
    port = 143
  }
}
`, mailroot.VmailID, c.Domain, c.Hostname, mailroot.VmailDir, lmtpSocket)
}

// passwdFile is Dovecot's passdb: the users' lines as given, then the
// monitor account with a salted SHA-512 of its password.
func (c config) passwdFile() string {
	var b strings.Builder
	b.WriteString(header)
	for _, u := range c.Users {
		fmt.Fprintf(&b, "%s:%s\n", u.Name, u.Rest)
	}
	sum := sha512.Sum512(append([]byte(c.MonitorPassword), c.Salt...))
	fmt.Fprintf(&b, "%s@%s:{SSHA512}%s\n", MonitorUser, c.Domain, base64.StdEncoding.EncodeToString(append(sum[:], c.Salt...)))
	return b.String()
}

// user is one line of the users file: the full address and the rest of
// the line (password and optional passwd-file fields) as given.
type user struct {
	Name, Rest string
}

// parseUsers reads a Dovecot passwd-file ("user[@domain]:{SCHEME}pass[:...]",
// '#' comments). Names without a domain get the workload's; other domains
// and the monitor account's name are errors naming the file and line.
func parseUsers(r io.Reader, file, domain string) ([]user, error) {
	var out []user
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok || rest == "" || strings.HasPrefix(rest, ":") {
			return nil, fmt.Errorf("%s:%d: want USER[@%s]:PASSWORD[:...] (Dovecot passwd-file)", file, n, domain)
		}
		name = strings.ToLower(name)
		local, dom, hasDom := strings.Cut(name, "@")
		if !hasDom {
			dom = domain
		}
		if dom != domain {
			return nil, fmt.Errorf("%s:%d: user %q is not in the domain %s", file, n, name, domain)
		}
		if !localRE.MatchString(local) || local == MonitorUser {
			return nil, fmt.Errorf("%s:%d: user name %q is not allowed (letters, digits, '.', '_', '-'; not %s)", file, n, local, MonitorUser)
		}
		full := local + "@" + dom
		if prev, dup := seen[full]; dup {
			return nil, fmt.Errorf("%s:%d: user %s is already on line %d", file, n, full, prev)
		}
		seen[full] = n
		out = append(out, user{Name: full, Rest: rest})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// newSecret returns a random password for the monitor account.
func newSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var localRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
