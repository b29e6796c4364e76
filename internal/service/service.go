// Package service is the glue every node daemon shares: a logger that
// names the component, and the sd_notify side of the supervision protocol
// PID 1 speaks (READY=1, STATUS=, WATCHDOG=1, STOPPING=1).
package service

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// NoRestart is the exit code with which a service tells PID 1 it must not
// be restarted (gokrazy's convention).
const NoRestart = 125

// NewLogger returns a text logger to w whose every line carries
// component=NAME.
func NewLogger(w io.Writer, component string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("component", component)
}

// Notifier speaks sd_notify to the supervisor (tandem's PID 1) when
// NOTIFY_SOCKET is set, and does nothing otherwise.
type Notifier struct{ Log *slog.Logger }

// Send sends raw sd_notify state lines.
func (n Notifier) Send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.Log.Warn("sd_notify", "err", err)
	}
}

// Ready says the service is up, with a status line.
func (n Notifier) Ready(status string) { n.Send("READY=1\nSTATUS=" + status) }

// Status updates the status line.
func (n Notifier) Status(s string) { n.Send("STATUS=" + s) }

// Watchdog returns a channel ticking at half WATCHDOG_USEC (nil when the
// supervisor wants no watchdog); the main loop sends WATCHDOG=1 on each
// tick, so a wedged loop stops the pings.
func (n Notifier) Watchdog(ctx context.Context) <-chan time.Time {
	iv, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.Log.Warn("watchdog", "err", err)
	}
	if iv <= 0 {
		return nil
	}
	t := time.NewTicker(iv / 2)
	go func() { <-ctx.Done(); t.Stop() }()
	return t.C
}
