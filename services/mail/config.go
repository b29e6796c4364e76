package mail

import (
	"bufio"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strconv"
	"strings"

	"tandem/internal/mailroot"
	"tandem/services/mail/mailtls"
)

// MonitorUser is the IMAP account the monitor logs in as; it receives no
// mail (Postfix does not list it) and its password is random per root.
const MonitorUser = "tandem-monitor"

// lmtpSocket is Dovecot's LMTP listener inside Postfix's queue, where
// Postfix's lmtp client reaches it as private/dovecot-lmtp.
const lmtpSocket = "/var/spool/postfix/private/dovecot-lmtp"

// The service certificate inside the container: the key and the chain
// (leaf first). Both 0600 root: Postfix's smtpd and Dovecot's config
// process read them as root before they drop privileges.
const (
	tlsKey   = "/etc/tandem/tls/key.pem"
	tlsChain = "/etc/tandem/tls/chain.pem"
)

// saslSocket is Dovecot's auth listener inside Postfix's queue, where
// Postfix's smtpd reaches it as private/auth for SMTP AUTH on the
// submission ports.
const saslSocket = "/var/spool/postfix/private/auth"

// config is what the container's configuration files are rendered from.
type config struct {
	Hostname, Domain string
	// Domains are the other domains served besides Domain.
	Domains         []string
	Users           []User // monitor account excluded
	Aliases         []Alias
	MonitorPassword string
	Salt            []byte // for the monitor's password hash; random unless a test fixes it
	// Listen are the addresses the services listen on besides loopback
	// (the VIP).
	Listen []string
	// Settings are the site settings (size limit, relaying, POP3).
	Settings Settings
	// TLS is the service certificate.
	TLS mailtls.Pair
	// HeaderChecks: the overlay has a header_checks table, which main.cf
	// then names.
	HeaderChecks bool
	// Rspamd: the root has rspamd (rspamdPresent), and every smtpd
	// passes its mail through it.
	Rspamd bool
	// DKIM are the served domains' signing keys.
	DKIM []DKIMKey
}

// headerChecks is a site's Postfix header_checks table, from an overlay.
const headerChecks = "etc/postfix/header_checks"

// listen is every address the services listen on: loopback, for the
// monitor and the container's own mail, then c.Listen.
func (c config) listen() []string {
	return append([]string{"127.0.0.1"}, c.Listen...)
}

// files returns the configuration files to write into the container root,
// by path below it.
func (c config) files() map[string][]byte {
	files := map[string][]byte{
		"etc/postfix/main.cf":             []byte(c.mainCF()),
		"etc/postfix/master.cf":           []byte(c.masterCF()),
		"etc/postfix/vmailbox":            []byte(c.vmailbox()),
		"etc/postfix/senders":             []byte(c.senders()),
		"etc/postfix/domains":             []byte(c.domains()),
		"etc/postfix/aliases":             []byte(c.aliases()),
		"etc/dovecot/dovecot.conf":        []byte(c.dovecotConf()),
		"etc/dovecot/users":               []byte(c.passwdFile()),
		"etc/mailname":                    []byte(c.Hostname + "\n"),
		"etc/hostname":                    []byte(c.Hostname + "\n"),
		"etc/hosts":                       []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s %s\n", c.Hostname, strings.SplitN(c.Hostname, ".", 2)[0])),
		strings.TrimPrefix(tlsKey, "/"):   c.TLS.Key,
		strings.TrimPrefix(tlsChain, "/"): c.TLS.Chain,
	}
	if c.Rspamd {
		maps.Copy(files, c.rspamdFiles())
	}
	if b := c.smarthostPasswordFile(); b != nil {
		files[smarthostPasswords] = b
	}
	return files
}

// secretFile reports whether the file at rel (below the root) is for root
// only.
func secretFile(rel string) bool {
	return "/"+rel == tlsKey || "/"+rel == tlsChain || rel == smarthostPasswords
}

const header = "# Written by tandem (services/mail) at every start: edits are lost.\n"

// mainCF is Postfix's main.cf: mail for the domain's listed users goes
// to Dovecot over LMTP, everything else for the domain is rejected; relay
// only from loopback on 25 and for users logged in on the submission
// ports (master.cf), never for anyone else whatever else is set.
// STARTTLS is offered on 25 (opportunistic: servers that cannot do TLS
// still deliver) and used outbound when the other side offers it; no
// AUTH on 25, and none anywhere before TLS. Postfix's queue-file fsync before 250 is its default
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
inet_interfaces = loopback-only
inet_protocols = all
mynetworks = ` + c.mynetworks() + `
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_tls_chain_files = ` + tlsKey + `, ` + tlsChain + `
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtp_tls_security_level = ` + c.outboundTLS() + `
smtp_tls_loglevel = 1
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_sender_login_maps = texthash:/etc/postfix/senders
smtpd_reject_unlisted_recipient = yes
virtual_mailbox_domains = texthash:/etc/postfix/domains
virtual_mailbox_maps = texthash:/etc/postfix/vmailbox
virtual_alias_maps = texthash:/etc/postfix/aliases
virtual_transport = lmtp:unix:private/dovecot-lmtp
biff = no
append_dot_mydomain = no
readme_directory = no
maillog_file = /dev/stdout
message_size_limit = ` + strconv.Itoa(c.Settings.messageSize()<<20) + `
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 5m
` + c.bindAddress() + c.relay() + c.headerChecks() + c.milterMain()
}

// mynetworks may relay on 25 without logging in: loopback and the
// relay_networks setting.
func (c config) mynetworks() string {
	nets := []string{"127.0.0.0/8"}
	for _, p := range c.Settings.RelayNetworks {
		if p.Addr().Is6() {
			nets = append(nets, "["+p.Addr().String()+"]/"+strconv.Itoa(p.Bits()))
		} else {
			nets = append(nets, p.String())
		}
	}
	return strings.Join(nets, " ")
}

// relay sends outbound mail to the smarthost, if one is set, logged in
// with its user and password (any mechanism but anonymous) if those are
// set too.
func (c config) relay() string {
	h := c.Settings.relayHost()
	if h == "" {
		return ""
	}
	out := "relayhost = " + h + "\n"
	if c.Settings.smarthostAuth() {
		out += `smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:/` + smarthostPasswords + `
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
`
	}
	return out
}

// outboundTLS is the TLS level of outbound mail: opportunistic, except
// that a password for the smarthost travels only encrypted. The
// smarthost's certificate is not verified (not yet: the root has no trust
// anchors of the site's to verify it with).
func (c config) outboundTLS() string {
	if c.Settings.smarthostAuth() {
		return "encrypt"
	}
	return "may"
}

// smarthostPasswords is Postfix's table of the smarthost's login, root's
// only in a directory of root's only (smtp opens it before it drops
// privileges), and gone while no login is set.
const smarthostPasswords = "etc/tandem/smarthost/sasl_passwd"

// smarthostPasswordFile is the table's line for the smarthost, or nil.
func (c config) smarthostPasswordFile() []byte {
	if !c.Settings.smarthostAuth() {
		return nil
	}
	return []byte(c.Settings.relayHost() + " " + c.Settings.SmarthostUser + ":" + c.Settings.SmarthostPassword + "\n")
}

func (c config) headerChecks() string {
	if !c.HeaderChecks {
		return ""
	}
	return "header_checks = regexp:/" + headerChecks + "\n"
}

// bindAddress sends outbound mail from the VIP, the address the
// domain's MX and SPF name, rather than from the node's own.
func (c config) bindAddress() string {
	if len(c.Listen) == 0 {
		return ""
	}
	return "smtp_bind_address = " + c.Listen[0] + "\n"
}

// masterCF runs every Postfix service unchrooted (the container is the
// confinement) and the log service postlogd, which writes maillog_file.
// SMTP listens on loopback and each Listen address, submission (587,
// STARTTLS required) and submissions (465, TLS from the first byte) on
// the Listen addresses; both take mail only from users logged in with
// SMTP AUTH (through Dovecot) and only with an envelope sender of their
// own. The addresses are in master.cf, not inet_interfaces (which is
// loopback-only): Postfix refuses to start when an inet_interfaces
// address is not on the node yet, and the mail starts before the
// cluster adds the VIP (allowNonlocalBind).
func (c config) masterCF() string {
	var b strings.Builder
	b.WriteString(header + "# service type  private unpriv  chroot  wakeup  maxproc command\n")
	for _, a := range c.listen() {
		fmt.Fprintf(&b, "%s:smtp inet n - n - - smtpd\n", a)
	}
	for _, a := range c.Listen {
		fmt.Fprintf(&b, "%s:submission inet n - n - - smtpd\n  -o syslog_name=postfix/submission%s%s", a, submissionOpts, c.milterSubmission())
		fmt.Fprintf(&b, "%s:submissions inet n - n - - smtpd\n  -o syslog_name=postfix/submissions\n  -o smtpd_tls_wrappermode=yes%s%s", a, submissionOpts, c.milterSubmission())
	}
	b.WriteString(masterServices)
	return b.String()
}

// submissionOpts are the submission ports' settings.
const submissionOpts = `
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
`

// masterServices are Postfix's internal services.
const masterServices = `tlsmgr    unix  -       -       n       1000?   1       tlsmgr
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

// senders maps each envelope sender to the logins allowed to use it: a
// user sends as themselves and as the aliases that deliver to them.
func (c config) senders() string {
	var b strings.Builder
	b.WriteString(header)
	local := map[string]bool{}
	for _, u := range c.Users {
		local[u.Name] = true
		fmt.Fprintf(&b, "%s\t%s\n", u.Name, u.Name)
	}
	for _, a := range c.Aliases {
		var owners []string
		for _, to := range a.To {
			if local[to] {
				owners = append(owners, to)
			}
		}
		if len(owners) > 0 {
			fmt.Fprintf(&b, "%s\t%s\n", a.From, strings.Join(owners, ", "))
		}
	}
	return b.String()
}

// domains lists the domains Postfix takes mail for, the cluster's first.
func (c config) domains() string {
	var b strings.Builder
	b.WriteString(header)
	for _, d := range append([]string{c.Domain}, c.Domains...) {
		fmt.Fprintf(&b, "%s\tOK\n", d)
	}
	return b.String()
}

// aliases is Postfix's virtual alias map.
func (c config) aliases() string {
	var b strings.Builder
	b.WriteString(header)
	for _, a := range c.Aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.From, strings.Join(a.To, ", "))
	}
	return b.String()
}

func (c config) vmailbox() string {
	var b strings.Builder
	b.WriteString(header)
	for _, u := range c.Users {
		fmt.Fprintf(&b, "%s\tOK\n", u.Name)
	}
	return b.String()
}

// dovecotConf is Dovecot's whole configuration (Debian's conf.d is not
// read): IMAP on 143 (STARTTLS) and 993 (TLS), optionally POP3 on 110 and
// 995, LMTP and SMTP AUTH on sockets in Postfix's queue, maildirs under
// mailroot.VmailDir owned by vmail. ssl = required: no login before TLS,
// whatever the mechanism; Dovecot counts a connection from the server's
// own address (the monitor's, on loopback) as secure. mail_fsync =
// always: a message is on disk, directory entry included, before LMTP
// says 250 and Postfix drops its queue file, so a crash just after never
// loses it.
func (c config) dovecotConf() string {
	protocols, pop3 := "imap lmtp", ""
	if c.Settings.POP3 {
		protocols = "imap pop3 lmtp"
		pop3 = `service pop3-login {
  inet_listener pop3 {
    port = 110
  }
  inet_listener pop3s {
    port = 995
    ssl = yes
  }
}
`
	}
	return header + fmt.Sprintf(`protocols = %[6]s
listen = %[7]s
base_dir = /run/dovecot
state_dir = /var/lib/dovecot
log_path = /dev/stderr
ssl = required
ssl_cert = <%[8]s
ssl_key = <%[9]s
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = %[1]d
last_valid_uid = %[1]d
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:~/Maildir
mail_fsync = always
mail_plugins = quota
lmtp_rcpt_check_quota = yes
postmaster_address = postmaster@%[2]s
hostname = %[3]s
passdb {
  driver = passwd-file
  args = username_format=%%Lu /etc/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%%Lu /etc/dovecot/users
  default_fields = uid=vmail gid=vmail home=%[4]s/%%d/%%n
}
plugin {
  quota = maildir:User quota
}
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
service lmtp {
  unix_listener %[5]s {
    user = postfix
    group = postfix
    mode = 0600
  }
}
service auth {
  unix_listener %[10]s {
    user = postfix
    group = postfix
    mode = 0600
  }
}
service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
%[11]s`, mailroot.VmailID, c.Domain, c.Hostname, mailroot.VmailDir, lmtpSocket,
		protocols, strings.Join(c.listen(), ", "), tlsChain, tlsKey, saslSocket, pop3)
}

// passwdFile is Dovecot's passdb and userdb: each user's hash and quota,
// then the monitor account with a salted SHA-512 of its password.
func (c config) passwdFile() string {
	var b strings.Builder
	b.WriteString(header)
	for _, u := range c.Users {
		extra := ""
		if u.QuotaMiB > 0 {
			extra = fmt.Sprintf("userdb_quota_rule=*:storage=%dM", u.QuotaMiB)
		}
		fmt.Fprintf(&b, "%s:%s::::::%s\n", u.Name, u.Hash, extra)
	}
	sum := sha512.Sum512(append([]byte(c.MonitorPassword), c.Salt...))
	fmt.Fprintf(&b, "%s@%s:{SSHA512}%s::::::\n", MonitorUser, c.Domain, base64.StdEncoding.EncodeToString(append(sum[:], c.Salt...)))
	return b.String()
}

// ParseUsersFile reads a Dovecot passwd-file to import
// ("user[@domain]:{SCHEME}pass[:...]", '#' comments): names without a
// domain get domain; the monitor account's name, a duplicate and a
// password tandem does not keep (ImportedHash) are errors naming the file
// and line. The users come back with their hashes.
func ParseUsersFile(r io.Reader, file, domain string) ([]User, error) {
	lines, err := parseUsers(r, file, domain)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, l := range lines {
		h, err := ImportedHash(l.name, l.password())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, l.line, err)
		}
		out = append(out, User{Name: l.name, Hash: h})
	}
	return out, nil
}

// ReadUsersFile reads a passwd-file as ParseUsersFile does, but leaves
// each password field as it is in Hash (tandemctl sends them so to the
// node, which checks and hashes them with ImportedHash).
func ReadUsersFile(r io.Reader, file, domain string) ([]User, error) {
	lines, err := parseUsers(r, file, domain)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, l := range lines {
		out = append(out, User{Name: l.name, Hash: l.password()})
	}
	return out, nil
}

// userLine is one line of a users file: the full address and the rest
// of the line (password and optional passwd-file fields) as given.
type userLine struct {
	name, rest string
	line       int
}

// password is the line's password field.
func (l userLine) password() string {
	p, _, _ := strings.Cut(l.rest, ":")
	return p
}

// parseUsers reads a passwd-file's lines: the syntax and the names, each
// error naming the file and line. Names from other domains than domain
// are kept (the cluster checks them against its domains).
func parseUsers(r io.Reader, file, domain string) ([]userLine, error) {
	var out []userLine
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
		if !domainRE.MatchString(dom) {
			return nil, fmt.Errorf("%s:%d: user %q: %q is not a DNS domain", file, n, name, dom)
		}
		if !localRE.MatchString(local) || local == MonitorUser {
			return nil, fmt.Errorf("%s:%d: user name %q is not allowed (letters, digits, '.', '_', '-'; not %s)", file, n, local, MonitorUser)
		}
		full := local + "@" + dom
		if prev, dup := seen[full]; dup {
			return nil, fmt.Errorf("%s:%d: user %s is already on line %d", file, n, full, prev)
		}
		seen[full] = n
		out = append(out, userLine{name: full, rest: rest, line: n})
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
