package cluster

import (
	"context"
	"time"

	"tandem/services/cluster/core"
)

// job is one resource operation or monitor, run one at a time.
type job struct {
	op      core.Op // start, stop or "monitor"
	res     string
	token   int64
	monitor bool
}

// execLoop runs resource operations and monitors one at a time.
func (d *Daemon) execLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.jobs:
			d.run(ctx, j)
		}
	}
}

func (d *Daemon) run(ctx context.Context, j job) {
	r := d.res[j.res]
	if j.monitor {
		c, cancel := context.WithTimeout(ctx, r.timeout("monitor"))
		err := r.r.Monitor(c)
		cancel()
		switch {
		case ctx.Err() != nil:
		case r.monitorCounts(err):
			d.log.Warn("monitor failed", "resource", j.res, "err", err)
			d.send(ctx, core.MonitorFailed{Resource: j.res, Err: err.Error()})
		case err != nil:
			d.log.Warn("monitor failed; tried again before it counts", "resource", j.res, "failures", r.failing, "of", r.cfg.MonitorFailures, "err", err)
		}
		if j.token != 0 {
			select {
			case d.monDone <- struct{}{}:
			case <-ctx.Done():
			}
		}
		return
	}
	var err error
	switch j.op {
	case core.OpStart:
		r.failing = 0
		if err = d.tokenValid(ctx, j.token); err == nil {
			c, cancel := context.WithTimeout(ctx, r.timeout("start"))
			err = r.r.Start(c)
			cancel()
		}
	case core.OpStop:
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout("stop"))
		err = r.r.Stop(c)
		cancel()
	}
	ev := core.Done{Op: j.op, Resource: j.res}
	if err != nil {
		ev.Err = err.Error()
		d.log.Error("resource action failed", "op", j.op, "resource", j.res, "err", err)
	} else {
		d.log.Info("resource action done", "op", j.op, "resource", j.res)
	}
	d.send(ctx, ev)
}

// scheduleMonitors queues due monitors while the group runs here.
func (d *Daemon) scheduleMonitors(ctx context.Context) {
	if !d.core.Monitoring() || d.monPending || len(d.jobs) > 0 {
		return
	}
	now := time.Now()
	var due []string
	for _, n := range d.order {
		if now.After(d.nextMonitor[n]) {
			due = append(due, n)
			d.nextMonitor[n] = now.Add(d.res[n].cfg.MonitorInterval)
		}
	}
	for i, n := range due {
		j := job{res: n, monitor: true}
		if i == len(due)-1 {
			j.token = d.core.Token()
			d.monPending = true
		}
		d.jobs <- j
	}
}
