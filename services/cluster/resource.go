package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"tandem/services/cluster/agent/ocf"
	"tandem/services/cluster/agent/vip"
	"tandem/services/mail"
)

// Resource is what the daemon runs: start, stop, monitor, each bounded by
// its timeout. Monitor returns an error matching ErrNotRunning when the
// resource is cleanly stopped.
type Resource interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Monitor(ctx context.Context) error
}

// ErrNotRunning is a monitor's "cleanly stopped".
var ErrNotRunning = errors.New("not running")

type resource struct {
	cfg ResourceConfig
	r   Resource
	// failing counts monitors failed in a row (exec loop only).
	failing int
}

// monitorCounts reports whether a monitor's result is a failure that
// counts: the MonitorFailures-th in a row, or a resource the monitor
// found not running (no probe was slow there). Any other result is
// remembered or, on success, forgets the failures before it.
func (r *resource) monitorCounts(err error) bool {
	switch {
	case err == nil:
		r.failing = 0
		return false
	case errors.Is(err, ErrNotRunning) || r.failing+1 >= r.cfg.MonitorFailures:
		r.failing = 0
		return true
	}
	r.failing++
	return false
}

func (r *resource) timeout(action string) time.Duration {
	if d, ok := r.cfg.Timeouts[action]; ok {
		return d
	}
	return 20 * time.Second
}

// builtins are the agents written in Go inside the daemon.
var builtins = []string{"vip", "drbd", "fs", "mail"}

// builtinTimeouts are the built-in agents' default timeouts, sized for a
// loaded machine: a start may wait for the peer to let go of the volume
// (drbd) or make the filesystem (fs, first start only). The mail agent
// gives its own (they depend on the workload's kind).
var builtinTimeouts = map[string]map[string]time.Duration{
	"vip":  {"start": 20 * time.Second, "stop": 20 * time.Second, "monitor": 10 * time.Second},
	"drbd": {"start": 90 * time.Second, "stop": 60 * time.Second, "monitor": 15 * time.Second},
	"fs":   {"start": 120 * time.Second, "stop": 60 * time.Second, "monitor": 15 * time.Second},
}

// newResource builds the agent of a resource. Built-in agents are Go code
// in the daemon; OCF agents get their meta-data read, default timeouts
// filled and validate-all run.
func newResource(ctx context.Context, d *Daemon, rc ResourceConfig) (*resource, error) {
	if slices.Contains(builtins, rc.Agent) {
		r, err := newBuiltin(d, rc)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", rc.Name, err)
		}
		t := maps.Clone(builtinTimeouts[rc.Agent])
		if a, ok := r.(agent); ok {
			if w, ok := a.Resource.(*mail.Workload); ok {
				t = w.Timeouts() // they depend on the workload's kind
			}
		}
		maps.Copy(t, rc.Timeouts)
		rc.Timeouts = t
		return &resource{cfg: rc, r: r}, nil
	}
	prov, typ, err := ocf.Parse(rc.Agent)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", rc.Name, err)
	}
	a := &ocf.Agent{Instance: rc.Name, Root: rc.OCFRoot, Provider: prov, Type: typ, Params: rc.Params, Timeouts: map[string]time.Duration{}}
	for k, v := range rc.Timeouts {
		a.Timeouts[k] = v
	}
	md, err := a.MetaData(ctx)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", rc.Name, err)
	}
	if err := a.LoadDefaults(md); err != nil {
		return nil, fmt.Errorf("resource %s: %w", rc.Name, err)
	}
	if err := a.Validate(ctx); err != nil {
		return nil, fmt.Errorf("resource %s: validate-all: %w", rc.Name, err)
	}
	rc.Timeouts = a.Timeouts
	return &resource{cfg: rc, r: agent{a, ocf.ErrNotRunning}}, nil
}

func newBuiltin(d *Daemon, rc ResourceConfig) (Resource, error) {
	switch rc.Agent {
	case "drbd":
		return newDRBD(d, rc.Name, rc.Params)
	case "fs":
		return newFS(d, rc.Params)
	case "mail":
		w, err := mail.FromParams(rc.Params)
		if err != nil {
			return nil, err
		}
		w.Logf = func(f string, a ...any) { d.log.Info(fmt.Sprintf(f, a...), "resource", rc.Name) }
		w.Site = d.mailSite(w)
		go w.Prefetch() // the template's overlay, off the takeover path
		return agent{w, mail.ErrNotRunning}, nil
	}
	v, err := vip.Parse(rc.Params["address"], rc.Params["interface"])
	if err != nil {
		return nil, err
	}
	return agent{v, vip.ErrNotRunning}, nil
}

// agent adapts an agent package's Start, Stop and Monitor, whose monitor
// reports "cleanly stopped" with that package's own sentinel.
type agent struct {
	Resource
	notRunning error
}

func (a agent) Monitor(ctx context.Context) error {
	err := a.Resource.Monitor(ctx)
	if errors.Is(err, a.notRunning) {
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return err
}
