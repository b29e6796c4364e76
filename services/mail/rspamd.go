package mail

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"tandem/internal/mailroot"
)

// rspamd is the container's third service: the milter that scores every
// message Postfix's smtpd takes (on 25, 587 and 465), rejects spam and
// GTUBE at DATA, adds the X-Spam headers, and signs outbound mail with
// each domain's DKIM key.
//
// Its configuration is tandem's: rspamd.conf, the top-level file rspamd
// reads, is tandem's own (it replaces Debian's), with the options, the
// logging and the one worker rspamd runs; it includes Debian's
// common.conf for the rules, the scores and the modules, whose settings
// tandem changes where rspamd merges a site's own, in local.d/. A full
// top-level file rather than local.d overrides of Debian's: Debian's
// rspamd.conf defines a normal worker on localhost:11333, the controller
// (the web interface) on localhost:11334 and the proxy on
// localhost:11332, and every one would have to be disabled or moved one by
// one; with tandem's, no worker runs that tandem did not list, and none
// listens on TCP. The rules stay Debian's, so a package update brings its
// new ones.
const (
	// rspamdConf is the file rspamd reads (its -c).
	rspamdConf = "/etc/rspamd/rspamd.conf"
	// rspamdLocal is where tandem's module settings go (rspamd merges
	// local.d/MODULE.conf into the module's section).
	rspamdLocal = "/etc/rspamd/local.d"
	// milterSocket is the proxy worker's milter listener, in Postfix's
	// private/ (postfix's, 0700) as Dovecot's sockets are, so only
	// postfix (and root) reach it. The socket itself is root's and 0666:
	// making it postfix's would leave rspamd's main process unable to
	// set its mode, which takes CAP_FOWNER on another user's file (the
	// container does not keep it; rspamd 3.4 then crashes logging the
	// failure).
	milterSocket = "/var/spool/postfix/private/rspamd"
	// dkimDir holds the DKIM keys, DOMAIN.key: root's, group
	// mailroot.RspamdUser, 0640 in a 0750 directory, so only root and
	// rspamd's workers read them.
	dkimDir = "/etc/tandem/dkim"
	// rspamdBinary is the daemon; a root unpacked from a template without
	// rspamd does not have it (rspamdPresent).
	rspamdBinary = "/usr/bin/rspamd"
)

// rspamdStop is how long rspamd has to stop (its workers finish the
// messages they scan).
const rspamdStop = 10 * time.Second

// Spam actions: rspamd's score thresholds. A message that scores reject
// or more is refused at DATA (554); add_header or more is delivered with
// "X-Spam: Yes". GTUBE is a reject whatever its score. Greylisting needs
// Redis, which the container does not run: off.
const (
	spamReject    = 15
	spamAddHeader = 6
)

// Network lookups: the node may have no internet (the lab has none), so
// no lookup may hold a message for long. Every DNS query (RBLs, SPF, DKIM
// keys, DMARC) is sent at most twice, each try waiting rspamdDNSTimeout:
// 2 s at most (rspamd's resolver counts the first send among its
// retransmits); a whole scan is cut at rspamdTaskTimeout, after which
// rspamd decides on what it has (never a temporary failure). Postfix
// waits for the milter up to milterContentTimeout, then applies
// milter_default_action.
const (
	rspamdDNSTimeout     = "1s"
	rspamdDNSRetransmits = 2
	rspamdTaskTimeout    = "8s"
	milterConnectTimeout = "10s"
	milterCommandTimeout = "30s"
	milterContentTimeout = "60s"
)

// rspamdFiles are rspamd's configuration files and the DKIM keys, by
// path below the root.
func (c config) rspamdFiles() map[string][]byte {
	files := map[string][]byte{
		rel(rspamdConf): []byte(c.rspamdConf()),
		rel(path.Join(rspamdLocal, "actions.conf")):        []byte(rspamdActions),
		rel(path.Join(rspamdLocal, "milter_headers.conf")): []byte(rspamdMilterHeaders),
		rel(path.Join(rspamdLocal, "dkim_signing.conf")):   []byte(c.dkimSigning()),
	}
	for _, k := range c.DKIM {
		files[rel(k.path())] = k.Key
	}
	return files
}

func rel(p string) string { return strings.TrimPrefix(p, "/") }

// dkimFile reports whether the file at rel (below the root) is a DKIM
// key.
func dkimFile(rel string) bool { return path.Dir("/"+rel) == dkimDir }

// path is the key's file in the container.
func (k DKIMKey) path() string { return path.Join(dkimDir, k.Domain+".key") }

// rspamdConf is rspamd's top-level configuration: Debian's rules and
// modules, tandem's options and logging (to stderr, which the init writes
// to mail.log), and one proxy worker that scans the messages itself
// (self_scan) and speaks the milter protocol on milterSocket. No
// controller (no web interface, no password), no normal worker, no fuzzy
// storage: nothing listens on TCP. local_addrs is loopback only (Debian's
// lists every private network, whose mail rspamd would then take for the
// site's own and sign).
func (c config) rspamdConf() string {
	return "# Written by tandem (services/mail) at every start: edits are lost.\n" + fmt.Sprintf(`.include "$CONFDIR/common.conf"

options {
  filters = "chartable,dkim,regexp,fuzzy_check";
  url_tld = "${SHAREDIR}/effective_tld_names.dat";
  cache_file = "$DBDIR/symbols.cache";
  hs_cache_dir = "${DBDIR}/";
  tempdir = "/tmp";
  ssl_ca_path = "%[1]s";
  explicit_modules = ["settings", "bayes_expiry"];
  local_addrs = [127.0.0.0/8, ::1];
  dns {
    timeout = %[2]s;
    retransmits = %[3]d;
    sockets = 16;
  }
  task_timeout = %[4]s;
  soft_reject_on_timeout = false;
}

logging {
  type = "console";
  systemd = false;
  color = false;
  level = "notice";
}

worker "rspamd_proxy" {
  bind_socket = "%[5]s mode=0666";
  milter = yes;
  timeout = 120s;
  count = 1;
  upstream "local" {
    default = yes;
    self_scan = yes;
  }
  spam_header = "X-Spam";
  reject_message = "Spam message rejected";
  discard_on_reject = false;
  quarantine_on_reject = false;
}
`, mailroot.CABundle, rspamdDNSTimeout, rspamdDNSRetransmits, rspamdTaskTimeout, milterSocket)
}

// rspamdActions are the spam thresholds (local.d/actions.conf).
var rspamdActions = header + fmt.Sprintf(`reject = %d;
add_header = %d;
rewrite_subject = null;
greylist = null;
`, spamReject, spamAddHeader)

// rspamdMilterHeaders adds to inbound mail X-Spam-Status ("Yes" or "No"
// and the score), X-Spamd-Bar and Authentication-Results (DKIM, SPF,
// DMARC), and removes an X-Spam a sender put in (rspamd's proxy adds its
// own "X-Spam: Yes" at add_header). Mail from loopback and from users
// logged in is left as it is: the site's own outbound mail does not carry
// its scores to the recipient.
const rspamdMilterHeaders = header + `use = ["x-spam-status", "x-spamd-bar", "authentication-results"];
skip_local = true;
skip_authenticated = true;
remove_upstream_spam_flag = true;
`

// dkimSigning signs outbound mail (local.d/dkim_signing.conf): from users
// logged in (on 587 and 465), from loopback and from the relay_networks
// setting's networks; with the key of the From header's domain (exactly
// that domain, one the cluster serves), only when the envelope sender is
// of the same domain and, for a user, the login is too. Inbound mail is
// never signed, and a domain without a key here is not signed at all
// (no fallback path).
func (c config) dkimSigning() string {
	var b strings.Builder
	b.WriteString(header + `sign_authenticated = true;
sign_local = true;
sign_inbound = false;
use_domain = "header";
use_esld = false;
allow_hdrfrom_mismatch = false;
allow_username_mismatch = false;
allow_envfrom_empty = true;
try_fallback = false;
use_redis = false;
`)
	if len(c.Settings.RelayNetworks) > 0 {
		nets := make([]string, len(c.Settings.RelayNetworks))
		for i, p := range c.Settings.RelayNetworks {
			nets[i] = strconv.Quote(p.String())
		}
		fmt.Fprintf(&b, "sign_networks = [%s];\n", strings.Join(nets, ", "))
	}
	b.WriteString("domain {\n")
	for _, k := range c.DKIM {
		fmt.Fprintf(&b, "  %q {\n    selector = %q;\n    path = %q;\n  }\n", k.Domain, k.Selector, k.path())
	}
	b.WriteString("}\n")
	return b.String()
}

// milterMain is main.cf's part for rspamd: every smtpd (25, 587, 465)
// passes its mail through it. milter_default_action, what Postfix does
// when rspamd does not answer (not running, or past the timeouts), is
// accept here, for port 25: mail from other servers keeps arriving,
// unscanned, while rspamd is down (the monitor reports a dead rspamd, and
// the cluster restarts the workload), rather than bouncing or waiting at
// the sender. The submission ports override it with tempfail
// (submissionOpts).
func (c config) milterMain() string {
	if !c.Rspamd {
		return ""
	}
	return `smtpd_milters = unix:` + milterSocket + `
non_smtpd_milters =
milter_protocol = 6
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}
milter_default_action = accept
milter_connect_timeout = ` + milterConnectTimeout + `
milter_command_timeout = ` + milterCommandTimeout + `
milter_content_timeout = ` + milterContentTimeout + `
`
}

// milterSubmission is the submission ports' milter_default_action:
// tempfail. A user's message that rspamd did not see would leave
// unsigned (and fail DMARC at the recipient) and unscanned; a 4xx makes
// the user's client try again later, and nothing leaves unsigned.
func (c config) milterSubmission() string {
	if !c.Rspamd {
		return ""
	}
	return "  -o milter_default_action=tempfail\n"
}
