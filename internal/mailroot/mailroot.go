// Package mailroot is the contract between the image builder, which packs
// the Postfix + Dovecot + rspamd template, and services/mail, which unpacks and runs
// it: the accounts Debian's maintainer scripts would have created (they do
// not run at build time), and the directories whose owners and modes
// Postfix and Dovecot insist on. The builder writes them into the
// template's tar headers; the workload re-applies the directories at every
// start, so a root unpacked by an older template is brought up to date.
package mailroot

// Account is one /etc/passwd entry (and its group of the same name and id).
type Account struct {
	Name     string
	ID       int
	Home     string
	Comment  string
	NoGroup  bool // no group of the same name (the account's group is GID)
	GroupID  int  // with NoGroup
	Password string
}

// Accounts are created in the template. IDs below 1000 as Debian's
// adduser --system would pick, fixed here so every template has the same
// bytes and every node the same owners on the replicated volume.
var Accounts = []Account{
	{Name: "root", ID: 0, Home: "/root", Comment: "root"},
	{Name: "daemon", ID: 1, Home: "/usr/sbin", Comment: "daemon"},
	{Name: "postfix", ID: PostfixID, Home: "/var/spool/postfix", Comment: "Postfix mail system"},
	{Name: "dovecot", ID: DovecotID, Home: "/usr/lib/dovecot", Comment: "Dovecot mail server"},
	{Name: "dovenull", ID: 102, Home: "/nonexistent", Comment: "Dovecot login user"},
	{Name: "vmail", ID: VmailID, Home: VmailDir, Comment: "mailboxes"},
	{Name: RspamdUser, ID: RspamdID, Home: RspamdDir, Comment: "rspamd spam filtering system"},
	{Name: "nobody", ID: 65534, Home: "/nonexistent", Comment: "nobody", NoGroup: true, GroupID: 65534},
}

// Groups without an account of the same name.
var Groups = []Group{
	{Name: "postdrop", ID: 103},
	{Name: "nogroup", ID: 65534},
}

// Group is one /etc/group entry.
type Group struct {
	Name string
	ID   int
}

// Account IDs other packages need.
const (
	PostfixID = 100
	DovecotID = 101
	// RspamdID is the user and group rspamd's workers run as (rspamd's
	// postinst would make _rspamd with adduser --system).
	RspamdID = 104
)

// RspamdUser is rspamd's account; RspamdDir its state directory (the
// compiled-regexp cache, the symbols cache), writable by it only.
const (
	RspamdUser = "_rspamd"
	RspamdDir  = "/var/lib/rspamd"
)

// VmailID owns every mailbox; VmailDir holds them (DOMAIN/USER/Maildir).
const (
	VmailID  = 5000
	VmailDir = "/var/vmail"
)

// Dir is a directory with the owner and mode its program checks.
type Dir struct {
	Path       string // without a leading slash
	UID, GID   int
	Mode       int64 // permission bits plus setgid/sticky
	OnlyCreate bool  // created if missing, owner and mode never reset (tmp)
}

// Dirs are the template's directories beyond what the packages ship. The
// Postfix queue owners and modes are those of Postfix's postfix-files
// ($mail_owner = postfix, $setgid_group = postdrop), as `postfix
// set-permissions` in Debian's postinst would leave them.
var Dirs = []Dir{
	{Path: "dev", Mode: 0o755},
	{Path: "proc", Mode: 0o555},
	{Path: "run", Mode: 0o755},
	{Path: "tmp", Mode: 0o1777, OnlyCreate: true},
	{Path: "var/tmp", Mode: 0o1777, OnlyCreate: true},
	{Path: "var/log", Mode: 0o755},
	{Path: "root", Mode: 0o700},
	// tandem's files in the container: the TLS key (tls/, 0700) and the
	// DKIM keys (dkim/, for rspamd's group) below it.
	{Path: "etc/tandem", Mode: 0o755},
	{Path: "var/spool/postfix", Mode: 0o755},
	{Path: "var/spool/postfix/pid", Mode: 0o755},
	{Path: "var/spool/postfix/active", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/bounce", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/corrupt", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/defer", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/deferred", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/flush", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/hold", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/incoming", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/private", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/saved", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/trace", UID: 100, Mode: 0o700},
	{Path: "var/spool/postfix/maildrop", UID: 100, GID: 103, Mode: 0o1730},
	{Path: "var/spool/postfix/public", UID: 100, GID: 103, Mode: 0o2710},
	{Path: "var/lib/postfix", UID: 100, GID: 100, Mode: 0o700},
	{Path: "var/lib/dovecot", Mode: 0o750},
	{Path: VmailDir[1:], UID: VmailID, GID: VmailID, Mode: 0o700},
	{Path: RspamdDir[1:], UID: RspamdID, GID: RspamdID, Mode: 0o750},
}

// SetgidFiles are Postfix's set-group-ID programs (postfix-files: mode
// 2555, group $setgid_group).
var SetgidFiles = []string{"usr/sbin/postdrop", "usr/sbin/postqueue"}

// CABundle is the bundle of the certificate authorities Debian's
// ca-certificates ships, as its postinst (update-ca-certificates) would
// have made it: the builder concatenates them; rspamd checks the HTTPS
// servers of its maps against it.
const CABundle = "/etc/ssl/certs/ca-certificates.crt"

// PostdropGID is the group of SetgidFiles and the public queue.
const PostdropGID = 103

// Workload kinds (the recipe's workload.kind, the resource's kind param).
const (
	KindPostfixDovecot = "postfix-dovecot"
	KindZimbra         = "zimbra"
)

// OverlayDir is the directory at the template's root that holds the
// recipe's mail overlays: the workload lays what is below it over the
// mail root after its generated configuration, at every start and
// reload.
const OverlayDir = "tandem-overlay"
