package mail

import (
	"golang.org/x/sys/unix"

	"tandem/internal/confine"
)

// postfixDovecotCaps confine the Postfix + Dovecot container, rspamd
// included (container.Spec.Confine): every process in it, root included,
// holds at most these capabilities, and runs with no_new_privs. rspamd
// needs none besides: its main process, as root, binds its milter socket
// in Postfix's private/ (CAP_DAC_OVERRIDE), starts its workers as _rspamd
// (CAP_SETUID, CAP_SETGID) and signals them (CAP_KILL). Its socket is
// root's rather than postfix's because setting the mode of another
// user's file takes CAP_FOWNER (milterSocket). Each one is here
// because the daemons, as this package configures them, fail without it;
// the error quoted is what the container's log said when TestWorkload ran
// with that one left out. TestWorkload also checks that no process of the
// container holds anything else.
//
// Everything else is dropped, among others CAP_SYS_ADMIN (mounts,
// namespaces), CAP_NET_ADMIN and CAP_NET_RAW (the container shares the
// node's network namespace: with them it could move the VIP or read the
// replication link), CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_SYS_BOOT,
// CAP_SYS_TIME, CAP_MKNOD, CAP_SETPCAP and CAP_SETFCAP. CAP_FOWNER was in
// the first draft of this list: TestWorkload passes without it, with
// nothing in the log, as it does without CAP_DAC_READ_SEARCH and
// CAP_SYS_RESOURCE.
//
// no_new_privs turns set-group-ID programs into plain ones: postdrop, and
// so sendmail(1) run inside the container by a user other than root,
// cannot queue mail. Nothing in the workload submits that way: mail comes
// in over SMTP, and Dovecot delivers over LMTP without sendmail.
var postfixDovecotCaps = confine.Limits{Keep: []uintptr{
	// Postfix's master binds port 25, Dovecot's master port 143:
	// "bind(0.0.0.0, 143) failed: Permission denied".
	unix.CAP_NET_BIND_SERVICE,
	// Both masters run their processes as postfix, dovecot, dovenull and
	// vmail: "anvil: Fatal: setuid(101) failed with euid=0: Operation not
	// permitted".
	unix.CAP_SETUID,
	// The same, for groups: "log: Fatal: setgroups() failed".
	unix.CAP_SETGID,
	// Dovecot's login processes and anvil chroot into /run/dovecot:
	// "imap-login: Fatal: chroot(/run/dovecot/login) failed: Operation
	// not permitted".
	unix.CAP_SYS_CHROOT,
	// Dovecot's master stops its processes, which run as other users,
	// with signals: "service(imap): kill(50, SIGQUIT) failed: Operation
	// not permitted" on a stop with an IMAP session open.
	unix.CAP_KILL,
	// Dovecot's master, as root, makes its LMTP socket in Postfix's
	// private/ (postfix, 0700): "bind(/var/spool/postfix/private/
	// dovecot-lmtp) failed: Permission denied".
	unix.CAP_DAC_OVERRIDE,
	// Dovecot hands its directories and sockets to their users:
	// "Fatal: fchown() failed for /run/dovecot/login: Operation not
	// permitted".
	unix.CAP_CHOWN,
}}
