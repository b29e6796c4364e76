package mail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/container"
)

// Zimbra is driven with zmcontrol, run as the zimbra user inside the
// container. The exit codes relied on are those of zmcontrol in Zimbra's
// zm-core-utils (src/bin/zmcontrol): for start and stop, 0 when every
// service's control script succeeded and 1 when any failed (or when LDAP
// cannot be reached); for status, 0 when every enabled service reports
// Running and 1 when any reports Stopped or the services cannot be
// determined. Nothing else is promised, so any other code, or no answer
// within the timeout, is a failure. Real Zimbra is not tested here: the
// tests run these hooks against a stand-in that follows those codes.
const (
	zmcontrolPath   = "/opt/zimbra/bin/zmcontrol"
	zmStartTimeout  = 10 * time.Minute // a loaded machine starts ZCS's Java mailbox, LDAP and MTA in minutes
	zmStopTimeout   = 5 * time.Minute
	zmStatusTimeout = 90 * time.Second // status runs each service's control script
)

// zmResult is what one zmcontrol run gave.
type zmResult struct {
	Exit     int
	Output   string
	TimedOut bool
}

// zm runs zmcontrol ACTION with at most timeout (less if ctx ends sooner).
func (w *Workload) zm(ctx context.Context, timeout time.Duration, action string) (zmResult, error) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	run := w.zmcontrol
	if run == nil {
		run = w.zmcontrolInContainer
	}
	r, err := run(ctx, timeout, action)
	if err != nil {
		return r, fmt.Errorf("mail: zmcontrol %s: %w", action, err)
	}
	return r, nil
}

// zmcontrolInContainer asks the container's init to run zmcontrol as the
// Zimbra user.
func (w *Workload) zmcontrolInContainer(ctx context.Context, timeout time.Duration, action string) (zmResult, error) {
	r, _, err := w.host().Call(ctx, container.Request{Op: "exec", Argv: []string{zmcontrolPath, action}, User: w.ZimbraUser, Timeout: timeout})
	return zmResult{Exit: r.Exit, Output: r.Output, TimedOut: r.TimedOut}, err
}

// zmCheck turns a start or stop result into an error.
func zmCheck(action string, timeout time.Duration, r zmResult) error {
	switch {
	case r.TimedOut:
		return fmt.Errorf("mail: zmcontrol %s: no result within %s", action, timeout)
	case r.Exit == 0:
		return nil
	default:
		return fmt.Errorf("mail: zmcontrol %s: exit %d: %s", action, r.Exit, lastLines(r.Output, 5))
	}
}

// startZimbra starts the container with no services of its own and runs
// zmcontrol start in it. ZCS must already be installed in Root/rootfs.
func (w *Workload) startZimbra(ctx context.Context) error {
	if w.zmcontrol == nil {
		if _, err := os.Stat(filepath.Join(w.rootfs(), zmcontrolPath)); err != nil {
			tpl, _ := w.templatePath()
			return fmt.Errorf("mail: zimbra: ZCS is not installed in %s (no %s): install it there from the installer %s first (docs/mail.md)", w.rootfs(), zmcontrolPath, tpl)
		}
		if err := w.host().Start(w.spec()); err != nil {
			return err
		}
		if err := w.waitInit(ctx); err != nil {
			return err
		}
	}
	r, err := w.zm(ctx, zmStartTimeout, "start")
	if err != nil {
		return err
	}
	return zmCheck("start", zmStartTimeout, r)
}

// waitInit waits until the init answers on its socket.
func (w *Workload) waitInit(ctx context.Context) error {
	for {
		_, _, err := w.host().Call(ctx, container.Request{Op: "status"})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mail: container init does not answer: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *Workload) stopZimbra(ctx context.Context) error {
	r, err := w.zm(ctx, zmStopTimeout, "stop")
	if err != nil {
		return err
	}
	return zmCheck("stop", zmStopTimeout, r)
}

// monitorZimbra maps zmcontrol status: 0 is healthy; 1 with every listed
// service Stopped is a clean stop (ErrNotRunning); anything else, or no
// answer in time, is a failure.
func (w *Workload) monitorZimbra(ctx context.Context) error {
	r, err := w.zm(ctx, zmStatusTimeout, "status")
	if err != nil {
		return err
	}
	switch {
	case r.TimedOut:
		return fmt.Errorf("mail: zmcontrol status: no result within %s", zmStatusTimeout)
	case r.Exit == 0:
		return nil
	case r.Exit == 1 && allStopped(r.Output):
		return fmt.Errorf("%w: zmcontrol status: every service stopped", ErrNotRunning)
	default:
		return fmt.Errorf("mail: zmcontrol status: exit %d: %s", r.Exit, lastLines(r.Output, 5))
	}
}

// allStopped reads zmcontrol status output ("Host NAME", then a line per
// service: "\tNAME   Running|Stopped"): true if it lists services and
// none runs.
func allStopped(out string) bool {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] == "Host" {
			continue
		}
		switch f[len(f)-1] {
		case "Running":
			return false
		case "Stopped":
			n++
		}
	}
	return n > 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
