package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"tandem/services/cluster/core"
	"tandem/services/ntp"
)

// clockEvery is how often the daemon reads the time service's status.
const clockEvery = time.Second

// readClock reads tandem-time's status file: whether the clock is
// synchronised, and what the file says (or why it says nothing).
func readClock(path string) core.Clock {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return core.Clock{Detail: "no status from the time service yet"}
	}
	if err != nil {
		return core.Clock{Detail: fmt.Sprintf("time status: %v", err)}
	}
	var st ntp.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return core.Clock{Detail: fmt.Sprintf("time status %s: %v", path, err)}
	}
	return core.Clock{Synced: st.Synchronised, Detail: st.String()}
}

// clockLoop feeds the core the clock's state whenever it changes, so a
// data node takes the group only with a synchronised clock
// (Config.TimeStatus, core.Config.ClockGuard).
func (d *Daemon) clockLoop(ctx context.Context) {
	var last core.Clock
	first := true
	for {
		c := readClock(d.cfg.TimeStatus)
		if first || c.Synced != last.Synced {
			if c.Synced {
				d.log.Info("clock synchronised: the group may be taken", "time", c.Detail)
			} else {
				d.log.Warn("clock not synchronised: the group is not taken here until it is", "time", c.Detail)
			}
		}
		if first || c != last {
			d.send(ctx, c)
		}
		first, last = false, c
		select {
		case <-ctx.Done():
			return
		case <-time.After(clockEvery):
		}
	}
}
