package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks sd_notify to the supervisor (tandem's PID 1) when
// NOTIFY_SOCKET is set, and does nothing otherwise.
type notifier struct{ log *slog.Logger }

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify", "err", err)
	}
}

// ready says the service is up, with a status line.
func (n notifier) ready(status string) { n.send("READY=1\nSTATUS=" + status) }

// status updates the status line.
func (n notifier) status(s string) { n.send("STATUS=" + s) }

// watchdog returns a channel ticking at half WATCHDOG_USEC (nil when the
// supervisor wants no watchdog); the main loop sends WATCHDOG=1 on each
// tick, so a wedged loop stops the pings.
func (n notifier) watchdog(ctx context.Context) <-chan time.Time {
	iv, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("watchdog", "err", err)
	}
	if iv <= 0 {
		return nil
	}
	t := time.NewTicker(iv / 2)
	go func() { <-ctx.Done(); t.Stop() }()
	return t.C
}

func newLogger(w io.Writer, component string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("component", component)
}
