// Package mail runs the mail workload: a container whose whole root file
// system lives on the replicated volume (Root/rootfs), created from the
// image's template the first time and configured for the cluster's domain
// at every start. The cluster daemon drives it as a resource: Start, Stop
// and Monitor. The container has its own mount, PID, UTS and IPC
// namespaces and shares the host's network namespace; its PID 1 is this
// package re-executed (see init_linux.go), which starts Dovecot, rspamd
// (the milter that filters spam and signs with DKIM) and Postfix's master
// in the foreground, reaps, and stops them in order. For a
// Zimbra workload the same container runs zmcontrol instead.
package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"tandem/internal/container"
	"tandem/internal/mailroot"
	"tandem/services/mail/mailprobe"
)

// ErrNotRunning is Monitor's "cleanly stopped".
var ErrNotRunning = errors.New("mail workload not running")

// Service stop timeouts inside the container (Postfix finishes the SMTP
// sessions it is in; Dovecot's LMTP deliveries end with an fsync).
const (
	postfixStop = 20 * time.Second
	dovecotStop = 15 * time.Second
)

func (w *Workload) logf(format string, args ...any) {
	if w.Logf != nil {
		w.Logf("mail: "+format, args...)
	}
}

// logName is the container's log (the init's and the daemons' output) in
// the workload root.
const logName = "mail.log"

// WorkloadNice is the mail workload's nice value. The workload yields the
// CPU to the node's own services: on a loaded node, Postfix and Dovecot
// starting at the same priority as the cluster daemon kept its etcd from
// answering lease renewals for seconds, until the owner lost its lease
// (Corosync runs at real-time priority for the same reason).
const WorkloadNice = 5

// host is the container the workload runs in.
func (w *Workload) host() *container.Host {
	return &container.Host{Root: w.Root, Log: logName, Nice: WorkloadNice, Logf: w.logf}
}

func (w *Workload) spec() container.Spec {
	s := container.Spec{Root: w.Root, Hostname: w.Hostname()}
	if w.Kind == mailroot.KindPostfixDovecot {
		// rspamd before Postfix, so its milter is there when the first
		// smtpd asks, and stopped after it.
		s.Services = []container.Service{
			{Name: "dovecot", Argv: []string{"/usr/sbin/dovecot", "-F", "-c", "/etc/dovecot/dovecot.conf"}, StopTimeout: dovecotStop},
		}
		if w.rspamdPresent() {
			s.Services = append(s.Services, container.Service{Name: "rspamd", StopTimeout: rspamdStop,
				Argv: []string{rspamdBinary, "-f", "-u", mailroot.RspamdUser, "-g", mailroot.RspamdUser, "-c", rspamdConf}})
		}
		s.Services = append(s.Services, container.Service{Name: "postfix", Argv: []string{"/usr/lib/postfix/sbin/master", "-s"}, StopTimeout: postfixStop})
		// A Zimbra container is not confined: ZCS starts its daemons
		// through sudo and set-user-ID helpers, which no_new_privs
		// disarms.
		s.Confine = &postfixDovecotCaps
	}
	return s
}

// Start unpacks the template if the root does not exist yet, configures
// the container, starts it and waits until SMTP and IMAP answer (Zimbra:
// until zmcontrol start succeeds). A container already running is
// reconfigured only on its next start.
func (w *Workload) Start(ctx context.Context) error {
	if err := os.MkdirAll(w.Root, 0o755); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if _, _, err := w.host().Call(ctx, container.Request{Op: "status"}); err == nil {
		w.logf("already running")
		if w.started.IsZero() {
			w.started = time.Now()
		}
		return w.waitReady(ctx, false)
	}
	if w.Kind == mailroot.KindZimbra {
		return w.startZimbra(ctx)
	}
	// Unpacking the template is the cluster's one-time set-up, not part
	// of this start: it has its own limit, and the start's own time
	// begins once it is done. On a busy host the lab's first unpack took
	// nearly two minutes of the start's three, and the start failed,
	// which bars the node.
	dl, hasBudget := ctx.Deadline()
	budget := time.Until(dl)
	t0 := time.Now()
	uctx, cancel := detachDeadline(ctx, UnpackTimeout)
	unpacked, err := w.ensureRootfs(uctx)
	cancel()
	if err != nil {
		return err
	}
	if unpacked && hasBudget {
		var cancel context.CancelFunc
		ctx, cancel = detachDeadline(ctx, budget)
		defer cancel()
	}
	t1 := time.Now()
	site, err := w.configure(ctx)
	if err != nil {
		return err
	}
	if err := w.allowNonlocalBind(); err != nil {
		return err
	}
	t2 := time.Now()
	w.milterSeen = false
	if err := w.host().Start(w.spec()); err != nil {
		return err
	}
	w.started = time.Now()
	// Where a start's time goes (issue 14: the takeover path), as each
	// start logs it: the root checked (or unpacked), the site's files
	// written, the container's init up; waitReady adds the rest.
	w.logf("start: root %s, configured %s, container %s", ms(t1.Sub(t0)), ms(t2.Sub(t1)), ms(time.Since(t2)))
	w.applied, w.rspamdStale = site.sum(), false
	return w.waitReady(ctx, unpacked)
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// reloadIfChanged applies the site again when it changed since Start or
// the last reload: the files are rewritten and Postfix and Dovecot
// reload them (SIGHUP to each master), without a restart; so does rspamd
// when its files changed (a domain's key, relay_networks): its main
// process reads the configuration again and replaces its workers. New
// connections get the new certificate at once; Postfix's smtpd
// processes in a session finish it with the old one.
func (w *Workload) reloadIfChanged(ctx context.Context) error {
	if w.Site == nil {
		return nil
	}
	site, err := w.Site(ctx)
	if err != nil {
		return fmt.Errorf("mail: site settings: %w", err)
	}
	if site.sum() == w.applied {
		return nil
	}
	rspamdChanged, err := w.write(site)
	if err != nil {
		return err
	}
	// Until rspamd has had its signal: the files are written by then,
	// and a retry finds them unchanged.
	w.rspamdStale = w.rspamdStale || rspamdChanged
	reload := []string{"dovecot", "postfix"}
	if w.rspamdStale && w.rspamdPresent() {
		reload = append(reload, "rspamd")
	}
	for _, s := range reload {
		if _, _, err := w.host().Call(ctx, container.Request{Op: "signal", Service: s, Signal: syscall.SIGHUP}); err != nil {
			return fmt.Errorf("mail: reload %s: %w", s, err)
		}
	}
	w.applied, w.rspamdStale = site.sum(), false
	w.logf("site settings changed: %s reloaded", strings.Join(reload, ", "))
	return nil
}

// nonlocalBind is the sysctl that lets a socket bind an address the node
// does not have (yet).
const nonlocalBind = "/proc/sys/net/ipv4/ip_nonlocal_bind"

// allowNonlocalBind lets Postfix and Dovecot bind the VIP before the
// cluster adds it: the group starts the mail before the VIP, so that
// clients reach the VIP only once mail answers, and stops the VIP first.
// The setting is the network namespace's, the node's (the container
// shares it); it lets a process bind an address that is not there, no
// more. HAProxy and keepalived setups set it for the same reason.
func (w *Workload) allowNonlocalBind() error {
	if len(w.Listen) == 0 {
		return nil
	}
	if b, err := os.ReadFile(nonlocalBind); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(nonlocalBind, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("mail: let the daemons bind the VIP %s before it is added: %w", strings.Join(w.Listen, ", "), err)
	}
	return nil
}

// UnpackTimeout bounds the first start's unpack of the template.
const UnpackTimeout = 15 * time.Minute

// detachDeadline returns a context that ends d from now or when parent is
// cancelled, whatever parent's own deadline.
func detachDeadline(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), d)
	stop := context.AfterFunc(parent, func() {
		if errors.Is(parent.Err(), context.Canceled) {
			cancel()
		}
	})
	return ctx, func() { stop(); cancel() }
}

// waitReady polls the monitor until it passes, the container breaks, or
// ctx ends; then it waits for rspamd's milter (waitMilter), longer on the
// first start on a volume (first).
func (w *Workload) waitReady(ctx context.Context, first bool) error {
	start := time.Now()
	var last error
	for {
		last = w.Monitor(ctx)
		if last == nil {
			answering := time.Since(start)
			w.waitMilter(ctx, first)
			total := time.Since(start)
			w.logf("ready in %s: SMTP and IMAP answering after %s, rspamd's milter after %s more", ms(total), ms(answering), ms(total-answering))
			return nil
		}
		if st, _, err := w.host().Call(ctx, container.Request{Op: "status"}); err == nil && !allRunning(st.Services) {
			return fmt.Errorf("mail: start: %s (see %s/%s)", describeServices(st.Services), w.Root, logName)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mail: start: not ready: %w (last check: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond): // a refused probe costs next to nothing
		}
	}
}

// Stop stops the container cleanly (services in reverse order, then
// whatever is left is killed) and returns once its init has exited, so no
// process holds the volume. Stopping a stopped workload succeeds.
func (w *Workload) Stop(ctx context.Context) error {
	if w.Kind == mailroot.KindZimbra {
		if err := w.stopZimbra(ctx); err != nil {
			w.logf("%v: killing the container", err)
		}
	}
	return w.host().Stop(ctx)
}

// Monitor checks the workload cheaply: the init answers and its services
// run, Postfix's SMTP banner reads, the monitor account logs in over
// IMAP. A workload with no container is ErrNotRunning; anything else
// wrong is another error.
func (w *Workload) Monitor(ctx context.Context) error {
	st, _, err := w.host().Call(ctx, container.Request{Op: "status"})
	if errors.Is(err, container.ErrNoInit) {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if err != nil {
		return err
	}
	if w.Kind == mailroot.KindZimbra {
		return w.monitorZimbra(ctx)
	}
	if !allRunning(st.Services) {
		return fmt.Errorf("mail: %s", describeServices(st.Services))
	}
	// A site that cannot be read or applied leaves the running service
	// as it is: the old certificate still serves.
	if err := w.reloadIfChanged(ctx); err != nil {
		w.logf("monitor: %v", err)
	}
	return w.probe(ctx)
}

// probe reads the SMTP banner, negotiates with rspamd's milter
// (checkMilter) and logs in over IMAP, within the monitor's own timeout (ctx; 30 s, Timeouts).
// A fixed 5 s per step, as before, was stricter than that timeout: a
// Dovecot merely slow to greet on a loaded owner failed three monitors in
// a row, and the restart it earned loaded the node more, until its
// watchdog reset it.
func (w *Workload) probe(ctx context.Context) error {
	if _, err := mailprobe.Banner(ctx, w.Dial, net.JoinHostPort(w.Address, "25")); err != nil {
		return fmt.Errorf("mail: monitor: %w", err)
	}
	if err := w.checkMilter(ctx); err != nil {
		return fmt.Errorf("mail: monitor: %w", err)
	}
	secret, err := os.ReadFile(w.Root + "/monitor.secret")
	if err != nil {
		return fmt.Errorf("mail: monitor: %w", err)
	}
	c, err := mailprobe.Login(ctx, w.Dial, net.JoinHostPort(w.Address, "143"), MonitorUser+"@"+w.Domain, strings.TrimSpace(string(secret)))
	if err != nil {
		return fmt.Errorf("mail: monitor: %w", err)
	}
	c.Logout()
	return nil
}

// milterProbeTimeout bounds one negotiation with rspamd's milter;
// milterStartWait how long a start other than the first on a volume
// waits for it; milterLoadLimit how long after the container's start a
// milter that has not answered yet is rspamd still loading rather than a
// failure: a failover's rspamd reads its cache within a second or two
// and compiles its rules without Hyperscan in 10 s under the lab's TCG,
// and its first start on a volume compiles them (8 s on the build
// machine; 102 s was not enough for Hyperscan under TCG, docs/lab.md).
const (
	milterProbeTimeout = 10 * time.Second
	milterStartWait    = 30 * time.Second
	milterLoadLimit    = 3 * time.Minute
)

// checkMilter checks that rspamd's milter answers. Until it has answered
// once since the container started, a silent milter is rspamd still
// loading, not a failure (a monitor that restarted it would have it
// compile again from the beginning), for milterLoadLimit; meanwhile
// Postfix applies milter_default_action. Its first answer is logged with
// the time since the container started: how long a failover's
// submission waited for it.
func (w *Workload) checkMilter(ctx context.Context) error {
	if !w.rspamdPresent() {
		return nil
	}
	mctx, cancel := context.WithTimeout(ctx, milterProbeTimeout)
	defer cancel()
	err := w.milterReady(mctx)
	switch {
	case err == nil:
		if !w.milterSeen {
			w.logf("rspamd's milter answering, %s after the container started", ms(time.Since(w.started)))
		}
		w.milterSeen = true
	case w.milterSeen:
		return err
	case time.Since(w.started) > milterLoadLimit:
		return fmt.Errorf("rspamd's milter has not answered in the %s since the container started: %w", milterLoadLimit, err)
	}
	return nil
}

// waitMilter waits until rspamd's milter has answered: on a failover
// rspamd reads its Hyperscan cache from the volume and answers within a
// second or two, so the service comes up scanning and signing; without
// SSSE3, which Hyperscan needs, rspamd compiles its rules at every start,
// and a start waits for it no longer than milterStartWait, after which
// mail on 25 is taken unscanned and 587 and 465 defer until it answers.
// The first start on a volume (first) builds the cache and waits for it
// until a little before ctx ends (the start's timeout): it is the
// cluster's first boot, not a takeover, and a service that came up
// before its filter would defer every user's message meanwhile.
func (w *Workload) waitMilter(ctx context.Context, first bool) {
	if !w.rspamdPresent() || w.milterSeen {
		return
	}
	wait := milterStartWait
	if dl, ok := ctx.Deadline(); ok && first {
		wait = max(wait, min(milterLoadLimit, time.Until(dl)-milterProbeTimeout))
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if err := w.checkMilter(wctx); err == nil && w.milterSeen {
			return
		}
		select {
		case <-wctx.Done():
			w.logf("rspamd's milter does not answer yet (compiling its rules?): until it does, mail on 25 is taken unscanned and unsigned, on 587 and 465 deferred")
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func allRunning(s []container.ServiceState) bool {
	for _, x := range s {
		if !x.Running {
			return false
		}
	}
	return true
}

func describeServices(s []container.ServiceState) string {
	var parts []string
	for _, x := range s {
		if x.Running {
			parts = append(parts, x.Name+" running")
		} else {
			parts = append(parts, x.Name+" "+x.Exit)
		}
	}
	return strings.Join(parts, ", ")
}
