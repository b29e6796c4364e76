// Package workload builds the mail workload's template at image build time:
// the root file system of the container services/mail runs, packed from
// Debian's packages into one zstd-compressed tar with every owner and mode
// in its headers, so no root is needed to build it and the same inputs give
// the same bytes. The recipe's mail overlays ride along below OverlayDir. For a Zimbra workload the template is the user's ZCS
// installer, carried as is.
package workload

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"tandem/image/debian"
	"tandem/image/overlay"
	"tandem/internal/mailroot"
)

// Kinds of workload (the recipe's workload.kind).
const (
	KindPostfixDovecot = mailroot.KindPostfixDovecot
	KindZimbra         = mailroot.KindZimbra
)

// FileName is the template's name in each slot directory of the boot
// partition.
func FileName(kind string) string {
	if kind == KindZimbra {
		return "zimbra-installer.tgz"
	}
	return "mail.tar.zst"
}

// Roots are the packages the Postfix + Dovecot template is resolved from;
// rspamd is the milter that signs (DKIM) and filters spam; Cyrus SASL's
// modules give Postfix's smtp client the mechanisms (PLAIN, LOGIN) to log
// in to a smarthost.
var Roots = []string{"postfix", "dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "dovecot-pop3d", "rspamd", "libsasl2-modules"}

// Skip lists the packages left out of the closure, each with the reason.
// Maintainer scripts do not run at build time, so packages that only serve
// them are dead weight; what they would have done (accounts, the Postfix
// queue, config files) the template and services/mail do themselves.
var Skip = map[string]string{
	"debconf":             "asks maintainer-script questions; services/mail writes the config",
	"debconf-2.0":         "virtual package of debconf",
	"adduser":             "creates accounts in postinst; the template ships passwd and group (internal/mailroot)",
	"ucf":                 "tracks config files for maintainer scripts",
	"dpkg":                "no package database in the container",
	"init-system-helpers": "enables init scripts and units; services/mail starts the daemons",
	"lsb-base":            "init.d script functions; no init scripts run",
	"ssl-cert":            "postinst makes a snakeoil certificate; the cluster gives the service certificate",
	"openssl":             "the CLI, used by dovecot's postinst to make a certificate",
	"libpam-runtime":      "pam-auth-update for maintainer scripts; Dovecot authenticates from a passwd-file, not PAM",
	"cpio":                "used by Postfix's scripts to fill a chroot; the container runs Postfix unchrooted",
	"e2fsprogs":           "chattr for Postfix's scripts; the queue is set up by services/mail",
	// rspamd's web interface (its controller worker, which the container
	// does not run): rspamd's postinst copies these files into it.
	"fonts-glyphicons-halflings": "fonts for rspamd's web interface, which does not run",
	"libjs-bootstrap4":           "JavaScript for rspamd's web interface, which does not run",
	"libjs-jquery":               "JavaScript for rspamd's web interface, which does not run",
	"libjs-requirejs":            "JavaScript for rspamd's web interface, which does not run",
	"perl":                       "for rspamd_stats, a Perl script that reads rspamd's log files; nothing runs it",
}

// OverlayDir is the directory at the template's root that holds the
// recipe's mail overlays (their mail/ trees merged), for the workload to
// lay over the mail root after its generated configuration
// (docs/mail.md, "Overlays").
const OverlayDir = mailroot.OverlayDir

// Options say how to build a template.
type Options struct {
	// Epoch is SOURCE_DATE_EPOCH, the time on every entry.
	Epoch int64
	// Overlay are the files put below OverlayDir: the recipe's overlays'
	// mail/ trees, merged (overlay.Merge).
	Overlay []overlay.File
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// BuildPostfixDovecot resolves Roots in the archive, fetches the packages
// (cached), and writes the template to w. It returns the packages used.
func BuildPostfixDovecot(ctx context.Context, a *debian.Archive, w io.Writer, o Options) ([]debian.Package, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	start := time.Now()
	pkgs, err := a.Closure(Roots, Skip)
	if err != nil {
		return nil, fmt.Errorf("mail template: %w", err)
	}
	t := newTree(o.Epoch)
	for i, p := range pkgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		deb, err := a.Fetch(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("mail template: %w", err)
		}
		if err := t.addDeb(deb); err != nil {
			return nil, fmt.Errorf("mail template: %s: %w", p.Name, err)
		}
		if (i+1)%10 == 0 || i+1 == len(pkgs) {
			o.Logf("mail template: %d/%d packages", i+1, len(pkgs))
		}
	}
	t.addBase()
	if err := t.addOverlay(o.Overlay); err != nil {
		return nil, fmt.Errorf("mail template: %w", err)
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return nil, err
	}
	n, err := t.write(enc)
	if err != nil {
		return nil, fmt.Errorf("mail template: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("mail template: %w", err)
	}
	o.Logf("mail template: %d packages, %d entries, %.1f MiB unpacked, in %s", len(pkgs), len(t.entries), float64(n)/(1<<20), time.Since(start).Round(time.Millisecond))
	return pkgs, nil
}

// CopyInstaller writes the user's ZCS installer to w unchanged.
func CopyInstaller(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("zimbra installer: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("zimbra installer %s: %w", path, err)
	}
	return nil
}
