package mail

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem/internal/mailroot"
	"tandem/internal/nodeimage"
	"tandem/services/mail/mailtls"
)

// Params, as the cluster resource's params map names them; see docs/mail.md.
const (
	ParamKind     = "kind"     // postfix-dovecot (default) | zimbra
	ParamRoot     = "root"     // workload directory on the replicated, mounted volume (required)
	ParamTemplate = "template" // template file; default: from the image description and $TANDEM_SLOT
	ParamDomain   = "domain"   // mail domain (required)
	ParamService  = "service"  // host label of the service name; default "mail"
	ParamUsers    = "users"    // Dovecot passwd-file imported into the cluster when it has no users; default /perm/tandem/mail-users
	ParamAddress  = "address"  // address the monitor dials; default 127.0.0.1
	ParamListen   = "listen"   // addresses served besides loopback (the VIP), comma-separated; default none
	ParamZimbra   = "zimbra_user"
)

// Defaults, in one place.
const (
	DefaultService = "mail"
	DefaultUsers   = "/perm/tandem/mail-users"
	DefaultAddress = "127.0.0.1"
	DefaultZimbra  = "zimbra"
)

// Workload is one mail workload: its root directory on the replicated
// volume, the template it is created from, and the names it serves.
type Workload struct {
	// Kind is mailroot.KindPostfixDovecot or mailroot.KindZimbra.
	Kind string
	// Root holds rootfs/ (the container's root file system), the
	// monitor's password, the init's control socket and the log.
	Root string
	// Template is the compressed template unpacked into Root/rootfs the
	// first time (postfix-dovecot); for zimbra the installer, not unpacked.
	Template string
	// Domain is the mail domain; Service.Domain is Postfix's myhostname.
	Domain, Service string
	// Users is a passwd-file the cluster imports while it has no users
	// (the users themselves come with Site).
	Users string
	// Address is where Start and Monitor reach SMTP (25) and IMAP (143).
	Address string
	// Listen are the addresses Postfix and Dovecot listen on besides
	// loopback: the VIP, never every address of the node.
	Listen []string
	// Site returns what the cluster keeps once for the mail service (the
	// TLS certificate); the cluster daemon sets it. Start applies it,
	// and Monitor applies it again when it changed.
	Site func(ctx context.Context) (Site, error)
	// ZimbraUser runs zmcontrol.
	ZimbraUser string
	// Dial opens the probes' connections; nil: a net.Dialer. Tests set it
	// to dial inside their network namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logf reports progress.
	Logf func(format string, args ...any)

	// zmcontrol runs zmcontrol in the container; tests replace it.
	zmcontrol func(ctx context.Context, timeout time.Duration, action string) (zmResult, error)

	// applied is the sum of the site Start or Monitor last applied.
	applied [32]byte
	// rspamdStale: rspamd's files changed and it has not reloaded them.
	rspamdStale bool
	// milterSeen: rspamd's milter has answered since the container
	// started (checkMilter).
	milterSeen bool
	// started is when Start started the container (checkMilter).
	started time.Time
	// resolvConf is the node's resolver configuration, copied into the
	// container; "" is /etc/resolv.conf (tests name another).
	resolvConf string
	// overlay is the template's mail overlay, read once (overlayRead).
	overlay     []overlayFile
	overlayRead bool
}

// Site is what the cluster keeps once for the mail service, the same for
// whichever data node runs it.
type Site struct {
	// TLS is the service certificate (mailtls.Check passed).
	TLS mailtls.Pair `json:"tls"`
	// Domains are the domains served besides the workload's Domain.
	Domains []string `json:"domains,omitempty"`
	// Users and Aliases of every domain.
	Users   []User  `json:"users,omitempty"`
	Aliases []Alias `json:"aliases,omitempty"`
	// Settings are the site settings.
	Settings Settings `json:"settings"`
	// DKIM are the served domains' DKIM signing keys.
	DKIM []DKIMKey `json:"dkim,omitempty"`
}

func (s Site) sum() [32]byte {
	b, _ := json.Marshal(s)
	return sha256.Sum256(b)
}

var (
	labelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	known    = []string{ParamKind, ParamRoot, ParamTemplate, ParamDomain, ParamService, ParamUsers, ParamAddress, ParamListen, ParamZimbra}
)

// FromParams builds the workload from the cluster resource's params,
// validating them; every error names the param.
func FromParams(params map[string]string) (*Workload, error) {
	var unknown []string
	for k := range params {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("mail: unknown params %s (expected: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	get := func(k, def string) string {
		if v := params[k]; v != "" {
			return v
		}
		return def
	}
	w := &Workload{
		Kind: get(ParamKind, mailroot.KindPostfixDovecot), Root: params[ParamRoot], Template: params[ParamTemplate],
		Domain: params[ParamDomain], Service: get(ParamService, DefaultService), Users: get(ParamUsers, DefaultUsers),
		Address: get(ParamAddress, DefaultAddress), ZimbraUser: get(ParamZimbra, DefaultZimbra),
	}
	if l := params[ParamListen]; l != "" {
		w.Listen = strings.Split(l, ",")
	}
	if err := w.validate(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Workload) validate() error {
	if w.Kind != mailroot.KindPostfixDovecot && w.Kind != mailroot.KindZimbra {
		return fmt.Errorf("mail: param %s: %q is not %s or %s", ParamKind, w.Kind, mailroot.KindPostfixDovecot, mailroot.KindZimbra)
	}
	if w.Root == "" || !filepath.IsAbs(w.Root) || filepath.Clean(w.Root) != w.Root || w.Root == "/" {
		return fmt.Errorf("mail: param %s: %q must be a clean absolute directory below / (on the replicated volume)", ParamRoot, w.Root)
	}
	if len(w.host().SocketPath()) > 100 {
		return fmt.Errorf("mail: param %s: %q is too long for the control socket path", ParamRoot, w.Root)
	}
	if !domainRE.MatchString(w.Domain) {
		return fmt.Errorf("mail: param %s: %q is not a lower-case DNS domain (e.g. example.com)", ParamDomain, w.Domain)
	}
	if !labelRE.MatchString(w.Service) {
		return fmt.Errorf("mail: param %s: %q is not a lower-case host label (e.g. mail)", ParamService, w.Service)
	}
	if !filepath.IsAbs(w.Users) {
		return fmt.Errorf("mail: param %s: %q is not an absolute path", ParamUsers, w.Users)
	}
	if net.ParseIP(w.Address) == nil {
		return fmt.Errorf("mail: param %s: %q is not an IP address", ParamAddress, w.Address)
	}
	for _, a := range w.Listen {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("mail: param %s: %q is not a unicast IPv4 address of the node (the VIP; loopback is always served)", ParamListen, a)
		}
	}
	if w.Template != "" && !filepath.IsAbs(w.Template) {
		return fmt.Errorf("mail: param %s: %q is not an absolute path", ParamTemplate, w.Template)
	}
	if !labelRE.MatchString(w.ZimbraUser) {
		return fmt.Errorf("mail: param %s: %q is not a user name", ParamZimbra, w.ZimbraUser)
	}
	return nil
}

// Hostname is the service's host name: service.domain.
func (w *Workload) Hostname() string { return w.Service + "." + w.Domain }

// templatePath is the template param, else the running slot's template
// named by the image description (/boot/slot-$TANDEM_SLOT/NAME).
func (w *Workload) templatePath() (string, error) {
	if w.Template != "" {
		return w.Template, nil
	}
	f, err := os.Open(nodeimage.Path)
	if err != nil {
		return "", fmt.Errorf("mail: param %s not set and no image description: %w", ParamTemplate, err)
	}
	defer f.Close()
	img, err := nodeimage.Read(f)
	if err != nil {
		return "", err
	}
	slot := os.Getenv("TANDEM_SLOT")
	if img.Workload == nil || slot == "" {
		return "", fmt.Errorf("mail: param %s not set, and the image has no workload template or $TANDEM_SLOT is unset", ParamTemplate)
	}
	return img.Workload.TemplatePath(slot), nil
}

// Timeouts are the action timeouts to configure for the workload's kind,
// sized for a loaded 2-core machine: Postfix and Dovecot start in about a
// second when idle; Zimbra's zmcontrol takes minutes.
func (w *Workload) Timeouts() map[string]time.Duration {
	if w.Kind == mailroot.KindZimbra {
		return map[string]time.Duration{"start": zmStartTimeout + time.Minute, "stop": zmStopTimeout + time.Minute, "monitor": zmStatusTimeout + 30*time.Second}
	}
	return map[string]time.Duration{"start": 120 * time.Second, "stop": 60 * time.Second, "monitor": 30 * time.Second}
}
