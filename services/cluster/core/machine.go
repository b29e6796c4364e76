package core

import (
	"fmt"
	"slices"
	"time"
)

// Phase is where the group is on this node.
type Phase string

// The phases.
const (
	PhaseInit      Phase = "init"
	PhaseIdle      Phase = "idle"
	PhaseAcquiring Phase = "acquiring"
	PhaseStarting  Phase = "starting"
	PhaseRunning   Phase = "running"
	PhaseStopping  Phase = "stopping"
	PhaseReleasing Phase = "releasing"
	// PhaseFailed: a stop failed; the node keeps its lease (so the peer
	// cannot start the group) and stops petting the watchdog.
	PhaseFailed Phase = "failed"
)

// what to do once the group is stopped
type after int

const (
	thenIdle after = iota
	thenRelease
	thenRestart
)

// Core is the state machine. It is not safe for concurrent use.
type Core struct {
	cfg Config
	now time.Time

	polled, quorum bool
	cs             ClusterState
	// clockSynced is the last Clock event's (true without ClockGuard);
	// it gates taking the group, not keeping it (canAcquire).
	clockSynced bool
	clockDetail string
	vacantSince time.Time
	localFail   map[string]int

	held      bool
	token     int64
	deadline  time.Time // stop the group from here on: renewed + ttl - stop_margin
	renewedAt time.Time // when the last renewal etcd answered was sent
	armed     bool
	petted    time.Time // last watchdog pet
	starved   bool      // the watchdog is no longer petted: ResetComing was sent

	phase      Phase
	idx        int // highest resource that may be active
	restartAt  int // a restart stops down to this resource and starts from it
	inflight   bool
	then       after
	stopFailed string
	rstate     map[string]string

	fencedToken int64
	takeoverNow bool
	needPoll    bool // the last poll is stale: wait for a fresh one
	reason      string
}

// New returns a core in PhaseInit; its first decision, once time or state
// arrives, is to stop every resource of the group (it holds no lease).
func New(cfg Config) *Core {
	c := &Core{cfg: cfg, phase: PhaseInit, localFail: map[string]int{}, rstate: map[string]string{},
		clockSynced: !cfg.ClockGuard, clockDetail: "no status from the time service yet"}
	for _, r := range cfg.Resources {
		c.rstate[r] = "unknown"
	}
	return c
}

// Step feeds one event at time now and returns the actions to carry out,
// in order.
func (c *Core) Step(now time.Time, ev Event) []Action {
	c.now = now
	var out []Action
	switch e := ev.(type) {
	case Tick:
	case Poll:
		c.poll(e)
	case Acquired:
		out = c.acquired(e)
	case AcquireFailed:
		if c.phase == PhaseAcquiring {
			c.phase = PhaseIdle
		}
		c.takeoverNow = false
		c.needPoll = true
	case Renewed:
		out = c.renewed(e)
	case Done:
		out = c.done(e)
	case MonitorFailed:
		out = c.monitorFailed(e)
	case Fenced:
		if e.OK && e.Node == c.cs.Owner {
			out = append(out, Revoke{Node: e.Node, Token: c.cs.Token})
			c.takeoverNow = true
		}
	case Released:
		if c.phase == PhaseReleasing {
			c.phase = PhaseIdle
		}
	case Clock:
		c.clockSynced, c.clockDetail = e.Synced || !c.cfg.ClockGuard, e.Detail
	}
	return append(out, c.evaluate()...)
}

func (c *Core) poll(e Poll) {
	c.polled = true
	c.needPoll = false
	c.quorum = e.OK
	if !e.OK {
		return
	}
	c.cs = e.State
	for r, n := range c.localFail {
		if c.failCount(c.cfg.Node, r) >= n {
			delete(c.localFail, r)
		}
	}
	if c.cs.Owner == "" && !c.cs.Released {
		if c.vacantSince.IsZero() {
			c.vacantSince = c.now
		}
	} else {
		c.vacantSince = time.Time{}
	}
}

func (c *Core) failCount(node, res string) int {
	n := c.cs.FailCounts[node][res]
	if node == c.cfg.Node && c.localFail[res] > n {
		n = c.localFail[res]
	}
	return n
}

func (c *Core) acquired(e Acquired) []Action {
	c.takeoverNow = false
	if c.phase != PhaseAcquiring {
		return []Action{Release{Token: e.Token}}
	}
	c.held, c.token = true, e.Token
	c.reason = ""
	c.renewedAt = e.SentAt
	c.deadline = e.SentAt.Add(c.cfg.Timing.LeaseTTL - c.cfg.Timing.StopMargin)
	c.armed, c.petted, c.starved = true, c.now, false
	out := []Action{Watchdog{Op: "arm"}}
	if c.cs.MoveTo == c.cfg.Node {
		out = append(out, ClearMove{})
	}
	if c.cs.Maintenance || len(c.cfg.Resources) == 0 {
		c.phase = PhaseRunning
		c.idx = len(c.cfg.Resources) - 1
		return out
	}
	c.phase, c.idx = PhaseStarting, 0
	return append(out, c.op(OpStart, 0))
}

func (c *Core) renewed(e Renewed) []Action {
	if !c.held {
		return nil
	}
	if e.SentAt.After(c.renewedAt) {
		c.renewedAt = e.SentAt
		c.deadline = e.SentAt.Add(c.cfg.Timing.LeaseTTL - c.cfg.Timing.StopMargin)
	}
	return nil
}

// petWatchdog pets the armed watchdog at every step (at most every quarter
// timeout) for as long as a reset that begins now would still come before
// the lease can expire: now + watchdog_timeout <= the last answered
// renewal's send time + lease_ttl. So the watchdog resets an owner only
// when it has neither renewed nor stopped by the time its lease may
// expire, and never earlier than the stop the deadline begins
// (lease_ttl - stop_margin after that renewal); a slow renewal, answered
// late but in time, is no reason for a reset. A hung daemon stops
// stepping, and is reset one timeout after its last pet.
//
// Petting resumes if a late renewal makes the rule hold again before the
// reset: the rule is safe at any moment.
func (c *Core) petWatchdog() []Action {
	if !c.armed {
		return nil
	}
	t := c.cfg.Timing
	expiry := c.renewedAt.Add(t.LeaseTTL)
	if c.stopFailed == "" && !c.now.Add(t.WatchdogTimeout).After(expiry) {
		if !c.starved && c.now.Sub(c.petted) < t.WatchdogTimeout/4 {
			return nil
		}
		c.petted, c.starved = c.now, false
		return []Action{Watchdog{Op: "pet"}}
	}
	if c.starved {
		return nil
	}
	c.starved = true
	why := "no lease renewal answered in time, and the group not stopped"
	if c.stopFailed != "" {
		why = "stop of " + c.stopFailed + " failed; the lease is kept so the peer cannot start"
	}
	return []Action{ResetComing{At: c.petted.Add(t.WatchdogTimeout), Renewed: c.renewedAt, Expiry: expiry, Why: why}}
}

func (c *Core) op(op Op, i int) Action {
	c.inflight = true
	r := c.cfg.Resources[i]
	c.rstate[r] = string(op) + "ing"
	if op == OpStop {
		c.rstate[r] = "stopping"
	}
	return Resource{Op: op, Resource: r, Token: c.token}
}

func (c *Core) done(e Done) []Action {
	c.inflight = false
	switch {
	case e.Op == OpStart && e.Err != "":
		c.rstate[e.Resource] = "failed"
		// A failed start is fatal on this node, as Pacemaker's
		// start-failure-is-fatal: the fail count jumps to the threshold.
		n := c.cfg.MigrationThreshold
		if n == 0 {
			n = 1
		}
		c.localFail[e.Resource] = n
		out := []Action{IncFail{Resource: e.Resource, AtLeast: n}}
		c.reason = fmt.Sprintf("start of %s failed: %s", e.Resource, e.Err)
		return append(out, c.beginStop(thenRelease)...)
	case e.Op == OpStart:
		c.rstate[e.Resource] = "started"
	case e.Err != "":
		c.rstate[e.Resource] = "stop-failed"
		c.stopFailed = e.Resource
		c.reason = fmt.Sprintf("stop of %s failed: %s; the watchdog will reset this node", e.Resource, e.Err)
	default:
		c.rstate[e.Resource] = "stopped"
	}
	switch c.phase {
	case PhaseStarting:
		if c.idx+1 < len(c.cfg.Resources) {
			c.idx++
			return []Action{c.op(OpStart, c.idx)}
		}
		c.phase = PhaseRunning
		c.reason = ""
	case PhaseStopping:
		if e.Op == OpStart {
			return []Action{c.op(OpStop, c.idx)}
		}
		if c.idx > c.stopTo() {
			c.idx--
			return []Action{c.op(OpStop, c.idx)}
		}
		return c.finishStop()
	}
	return nil
}

func (c *Core) monitorFailed(e MonitorFailed) []Action {
	if c.phase != PhaseRunning || c.cs.Maintenance {
		return nil
	}
	c.rstate[e.Resource] = "failed"
	n := c.failCount(c.cfg.Node, e.Resource) + 1
	c.localFail[e.Resource] = n
	out := []Action{IncFail{Resource: e.Resource, AtLeast: n}}
	c.reason = fmt.Sprintf("monitor of %s failed (%s), fail count %d", e.Resource, e.Err, n)
	if c.cfg.MigrationThreshold > 0 && n >= c.cfg.MigrationThreshold {
		return append(out, c.beginStop(thenRelease)...)
	}
	// As Pacemaker restarts a failed member of a group: that resource
	// and the ones started after it, not those it runs on. A mail
	// monitor that failed under load restarted DRBD and the filesystem
	// too, a minute of extra work on a node already short of time.
	c.restartAt = max(0, slices.Index(c.cfg.Resources, e.Resource))
	return append(out, c.beginStop(thenRestart)...)
}

// stopTo is the lowest resource the stop under way stops.
func (c *Core) stopTo() int {
	if c.then == thenRestart {
		return c.restartAt
	}
	return 0
}

// beginStop stops the group in reverse order, from the highest resource
// that may be active.
func (c *Core) beginStop(then after) []Action {
	if c.phase == PhaseStopping {
		if then == thenIdle || c.then == thenRestart {
			c.then = then
		}
		return nil
	}
	c.phase, c.then = PhaseStopping, then
	if c.inflight {
		return nil
	}
	if c.idx < 0 {
		return c.finishStop()
	}
	return []Action{c.op(OpStop, c.idx)}
}

func (c *Core) finishStop() []Action {
	c.idx = c.stopTo() - 1
	if c.then == thenRestart && c.held && c.stopFailed == "" && c.leaveReason() == "" && !c.cs.Maintenance {
		c.phase, c.idx = PhaseStarting, c.restartAt
		return []Action{c.op(OpStart, c.idx)}
	}
	if c.idx >= 0 { // a restart that may not happen now: stop the rest
		c.then = thenRelease
		return []Action{c.op(OpStop, c.idx)}
	}
	var out []Action
	if c.stopFailed != "" {
		c.phase = PhaseFailed
		return nil
	}
	if c.held {
		out = append(out, Release{Token: c.token})
		c.held, c.token = false, 0
		c.phase = PhaseReleasing
		c.needPoll = true
	} else {
		c.phase = PhaseIdle
	}
	if c.armed && c.stopFailed == "" {
		c.armed, c.starved = false, false
		out = append(out, Watchdog{Op: "disarm"})
	}
	return out
}

// evaluate makes the decisions that depend on time and state, not on
// the event itself.
func (c *Core) evaluate() []Action {
	var out []Action
	if c.held && !c.now.Before(c.deadline) {
		out = append(out, Drop{Token: c.token})
		c.held, c.token = false, 0
		c.needPoll, c.vacantSince = true, time.Time{}
		c.reason = "lease could not be renewed: group stopped before the lease expires"
		switch c.phase {
		case PhaseStarting, PhaseRunning, PhaseStopping:
			out = append(out, c.beginStop(thenIdle)...)
		}
	}
	switch c.phase {
	case PhaseInit:
		if c.polled {
			c.idx = len(c.cfg.Resources) - 1
			out = append(out, c.beginStop(thenIdle)...)
		}
	case PhaseIdle:
		if c.canAcquire() {
			c.phase = PhaseAcquiring
			out = append(out, Acquire{})
		} else if f := c.fence(); f != nil {
			out = append(out, f)
		}
	case PhaseRunning:
		if r := c.leaveReason(); r != "" && !c.cs.Maintenance {
			c.reason = r
			out = append(out, c.beginStop(thenRelease)...)
		}
	}
	return append(out, c.petWatchdog()...)
}

// leaveReason says why this node may not run the group, or "".
func (c *Core) leaveReason() string {
	self := c.cfg.Node
	switch {
	case c.cfg.Role != RoleData:
		return "arbitrator: never runs resources"
	case c.cs.Standby[self]:
		return "node is in standby"
	case c.cs.MoveTo != "" && c.cs.MoveTo != self:
		return "group is being moved to " + c.cs.MoveTo
	}
	if r := c.overThreshold(self); r != "" {
		return r
	}
	p := c.cfg.Preferred
	if p != "" && p != self && c.cfg.PreferredScore > c.cfg.Stickiness && c.cs.MoveTo == "" &&
		c.cs.Online[p] && !c.cs.Standby[p] && c.overThreshold(p) == "" {
		return fmt.Sprintf("preferred node %s (score %d > stickiness %d)", p, c.cfg.PreferredScore, c.cfg.Stickiness)
	}
	return ""
}

func (c *Core) overThreshold(node string) string {
	if c.cfg.MigrationThreshold <= 0 {
		return ""
	}
	for _, r := range c.cfg.Resources {
		if n := c.failCount(node, r); n >= c.cfg.MigrationThreshold {
			return fmt.Sprintf("fail count of %s is %d, migration-threshold is %d", r, n, c.cfg.MigrationThreshold)
		}
	}
	return ""
}

func (c *Core) canAcquire() bool {
	switch {
	case !c.polled:
		c.reason = "starting"
		return false
	case c.cfg.Role != RoleData:
		c.reason = "arbitrator: never runs resources"
		return false
	case !c.quorum:
		c.reason = "no quorum: this node cannot reach a majority of the cluster; resources stay stopped"
		return false
	case c.cs.Maintenance:
		c.reason = "maintenance mode: resources are not managed"
		return false
	case !c.clockSynced:
		c.reason = "clock not synchronised (" + c.clockDetail + "): the group is not taken until it is"
		return false
	}
	if r := c.leaveReason(); r != "" {
		c.reason = r
		return false
	}
	if c.stopFailed != "" || c.needPoll {
		return false
	}
	switch {
	case c.cs.Owner != "":
		c.reason = "group runs on " + c.cs.Owner
		return false
	case c.cs.Released || c.takeoverNow:
		return true
	}
	at := c.vacantSince.Add(c.cfg.Timing.TakeoverMargin)
	if c.now.Before(at) {
		c.reason = "lease expired: waiting for the takeover margin"
		return false
	}
	return true
}

func (c *Core) fence() Action {
	o := c.cs.Owner
	if !c.cfg.Fencing || !c.quorum || o == "" || o == c.cfg.Node || c.leaveReason() != "" || c.cs.Maintenance {
		return nil
	}
	if online, known := c.cs.Online[o]; !known || online || c.fencedToken == c.cs.Token {
		return nil
	}
	c.fencedToken = c.cs.Token
	c.reason = "fencing " + o + ": its cluster member does not answer"
	return Fence{Node: o}
}

// Status is the core's view for status reports.
type Status struct {
	Phase     Phase             `json:"phase"`
	Quorum    bool              `json:"quorum"`
	Held      bool              `json:"held"`
	Token     int64             `json:"token,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Resources map[string]string `json:"resources"`
	Deadline  time.Time         `json:"deadline,omitzero"`
}

// Status returns the core's current view.
func (c *Core) Status() Status {
	rs := make(map[string]string, len(c.rstate))
	for k, v := range c.rstate {
		rs[k] = v
	}
	s := Status{Phase: c.phase, Quorum: c.quorum, Held: c.held, Token: c.token, Resources: rs}
	if c.held {
		s.Deadline = c.deadline
	}
	if c.phase != PhaseRunning || c.reason != "" {
		s.Reason = c.reason
	}
	if c.phase == PhaseRunning && c.stopFailed == "" {
		s.Reason = ""
	}
	if !c.quorum && c.polled && c.cfg.Role == RoleData {
		s.Reason = "no quorum: this node cannot reach a majority of the cluster; resources stay stopped"
	}
	return s
}

// Monitoring reports whether the daemon should run resource monitors.
func (c *Core) Monitoring() bool { return c.phase == PhaseRunning && c.held && !c.cs.Maintenance }

// Token returns the fencing token the node holds, or 0.
func (c *Core) Token() int64 { return c.token }
