package cluster

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tandem/services/cluster/core"
)

// resetCauseFile, in the state directory, holds the reset the core last
// announced (core.ResetComing) until the watchdog is petted or disarmed
// again. A node that was reset finds it on its next boot, so the reset
// says why even when the serial console was not kept.
const resetCauseFile = "reset-cause.json"

type resetCause struct {
	Time    time.Time `json:"time"`     // when the core stopped petting
	At      time.Time `json:"reset_at"` // when the watchdog fires
	Renewed time.Time `json:"last_renewal_sent"`
	Expiry  time.Time `json:"lease_expiry"`
	Why     string    `json:"why"`
}

// resetComing logs a reset the core announced, with its figures, and
// keeps it on perm.
func (d *Daemon) resetComing(a core.ResetComing) {
	now := time.Now()
	d.log.Error("watchdog: no longer petted; this node will be reset unless the group stops first",
		"why", a.Why, "reset_in", a.At.Sub(now).Round(10*time.Millisecond).String(),
		"last_renewal_sent", a.Renewed.Format(time.StampMilli),
		"lease_left", a.Expiry.Sub(now).Round(10*time.Millisecond).String())
	b, _ := json.Marshal(resetCause{Time: now, At: a.At, Renewed: a.Renewed, Expiry: a.Expiry, Why: a.Why})
	if err := d.st.Write(resetCauseFile, b); err != nil {
		d.log.Error("watchdog: record reset cause", "err", err)
	}
	d.resetPending = true
}

// resetAverted clears an announced reset once the watchdog is petted or
// disarmed again.
func (d *Daemon) resetAverted(op string) {
	if !d.resetPending {
		return
	}
	d.resetPending = false
	msg := "watchdog: petted again (a late renewal came back); no reset"
	if op == "disarm" {
		msg = "watchdog: disarmed, the group stopped in time; no reset"
	}
	d.log.Warn(msg)
	if err := os.Remove(d.st.Path(resetCauseFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Error("watchdog: clear reset cause", "err", err)
	}
}

// reportLastReset says at start whether the previous boot ended in a
// watchdog reset, and why: from the cause the last boot recorded and the
// watchdog driver's boot status.
func (d *Daemon) reportLastReset() {
	b, err := d.st.Read(resetCauseFile)
	card := watchdogCardReset(d.cfg.Watchdog)
	switch {
	case err == nil:
		var c resetCause
		if json.Unmarshal(b, &c) != nil {
			d.log.Warn("previous boot announced a watchdog reset; its record is unreadable", "file", d.st.Path(resetCauseFile))
			break
		}
		d.log.Warn("previous boot announced a watchdog reset", "why", c.Why,
			"announced", c.Time.Format(time.StampMilli), "reset_at", c.At.Format(time.StampMilli),
			"last_renewal_sent", c.Renewed.Format(time.StampMilli), "lease_expiry", c.Expiry.Format(time.StampMilli),
			"driver_says_reset", card)
	case card == "yes":
		d.log.Warn("previous boot ended in a watchdog reset that was not announced: the daemon stopped stepping for longer than watchdog_timeout (hung, or starved of CPU)",
			"watchdog_timeout", d.cfg.CoreTiming().WatchdogTimeout.String())
	}
	if err == nil {
		os.Remove(d.st.Path(resetCauseFile))
	}
}

// sysWatchdog is where the kernel shows its watchdogs.
var sysWatchdog = "/sys/class/watchdog"

// watchdogCardReset reads the Linux watchdog's boot status from sysfs
// (opening the device would start it): "yes" if the driver says its last
// reset was its own (WDIOF_CARDRESET), "no", or "unknown".
func watchdogCardReset(dev string) string {
	if !strings.HasPrefix(dev, "/dev/") {
		return "unknown" // none, or a test's recorder
	}
	name := filepath.Base(dev)
	if name == "watchdog" {
		name = "watchdog0"
	}
	b, err := os.ReadFile(filepath.Join(sysWatchdog, name, "bootstatus"))
	if err != nil {
		return "unknown"
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	if err != nil {
		return "unknown"
	}
	const wdiofCardReset = 0x20
	if v&wdiofCardReset != 0 {
		return "yes"
	}
	return "no"
}
