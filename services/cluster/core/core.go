// Package core is the cluster's decision core: a deterministic state machine
// that is fed events (time, cluster state read from etcd, lease and resource
// results) and returns the actions the daemon must carry out (acquire or
// release the group's lease, start or stop a resource under a fencing token,
// pet the watchdog, fence a peer). It does no I/O and reads no clock, so it
// is tested with scenario files (testdata/scenarios, datadriven).
package core

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Role is what a node does in the cluster.
type Role string

// The roles.
const (
	RoleData       Role = "data"
	RoleArbitrator Role = "arbitrator"
)

// Timing holds the lease and watchdog timings; see Validate for the rules
// that bind them.
type Timing struct {
	// LeaseTTL is the lifetime of the group's lease in etcd.
	LeaseTTL time.Duration
	// RenewInterval is how often the owner renews its lease.
	RenewInterval time.Duration
	// RenewRetries is how many failed renewals in a row are tolerated.
	RenewRetries int
	// StopMargin is how long before the lease can expire the owner starts
	// stopping the group when it could not renew.
	StopMargin time.Duration
	// WatchdogTimeout resets an owner that stops being able to pet it.
	WatchdogTimeout time.Duration
	// TakeoverMargin is waited after a lease expired before the peer takes
	// the group over (watchdog reset latency and clock-rate slack).
	TakeoverMargin time.Duration
}

// Validate checks the relations between the timings (the Patroni and SBD
// rules): renewal interval times (retries+1) plus the stop margin fits in
// the TTL, and the watchdog fires before the lease can expire.
func (t Timing) Validate() error {
	switch {
	case t.LeaseTTL < 2*time.Second:
		return fmt.Errorf("lease_ttl %v: must be at least 2s (etcd's minimum lease TTL)", t.LeaseTTL)
	case t.RenewInterval <= 0:
		return fmt.Errorf("renew_interval %v: must be positive", t.RenewInterval)
	case t.RenewRetries < 0:
		return fmt.Errorf("renew_retries %d: must not be negative", t.RenewRetries)
	case t.StopMargin <= 0:
		return fmt.Errorf("stop_margin %v: must be positive", t.StopMargin)
	case t.RenewInterval*time.Duration(t.RenewRetries+1)+t.StopMargin >= t.LeaseTTL:
		return fmt.Errorf("renew_interval %v * (renew_retries %d + 1) + stop_margin %v: must be less than lease_ttl %v",
			t.RenewInterval, t.RenewRetries, t.StopMargin, t.LeaseTTL)
	case t.WatchdogTimeout <= 0 || t.WatchdogTimeout >= t.LeaseTTL:
		return fmt.Errorf("watchdog_timeout %v: must be positive and less than lease_ttl %v", t.WatchdogTimeout, t.LeaseTTL)
	case t.TakeoverMargin < 0:
		return fmt.Errorf("takeover_margin %v: must not be negative", t.TakeoverMargin)
	}
	return nil
}

// DefaultTiming is the safe default: failover after a crash in about
// LeaseTTL + TakeoverMargin.
func DefaultTiming() Timing {
	return Timing{
		LeaseTTL:        3 * time.Second,
		RenewInterval:   400 * time.Millisecond,
		RenewRetries:    3,
		StopMargin:      1 * time.Second,
		WatchdogTimeout: 2500 * time.Millisecond,
		TakeoverMargin:  500 * time.Millisecond,
	}
}

// Config is what the core needs to know about its node and group.
type Config struct {
	Node      string
	Role      Role
	Resources []string // the group, in start order
	Timing    Timing
	// MigrationThreshold: a node whose fail count for a resource reaches
	// it may not run the group until a cleanup. Zero means never.
	MigrationThreshold int
	// Stickiness and Preferred, PreferredScore: the group moves back to
	// Preferred on its own only if PreferredScore > Stickiness.
	Stickiness     int
	Preferred      string
	PreferredScore int
	// Fencing says a fencing agent can power off a peer.
	Fencing bool
	// ClockGuard: the node takes the group only while its clock is
	// synchronised (Clock events); until the first one it is not.
	ClockGuard bool
}

// ClusterState is the cluster-wide state as read from etcd.
type ClusterState struct {
	Owner    string // node holding the group's lease, "" if none
	Token    int64  // the owner's fencing token (etcd revision)
	Released bool   // the owner key exists but was released cleanly
	// Standby nodes may not run the group.
	Standby map[string]bool
	// FailCounts[node][resource].
	FailCounts  map[string]map[string]int
	MoveTo      string
	Maintenance bool
	// Online data nodes (their etcd member answers).
	Online map[string]bool
}

// Event is an input of the core.
type Event interface{ event() string }

// Tick is the passing of time.
type Tick struct{}

// Poll is the result of a periodic linearizable read of the cluster
// state; OK false means it failed (no quorum or etcd unreachable).
type Poll struct {
	OK    bool
	State ClusterState
}

// Acquired reports the lease was granted with token; SentAt is when the
// request was sent (the lease can expire no earlier than SentAt+TTL).
type Acquired struct {
	Token  int64
	SentAt time.Time
}

// AcquireFailed reports another node won or etcd failed.
type AcquireFailed struct{ Err string }

// Renewed reports a successful lease renewal sent at SentAt.
type Renewed struct{ SentAt time.Time }

// Done reports the end of a Start or Stop.
type Done struct {
	Op       Op
	Resource string
	Err      string
}

// MonitorFailed reports that a running resource's monitor failed.
type MonitorFailed struct {
	Resource string
	Err      string
}

// Fenced reports the outcome of a Fence action.
type Fenced struct {
	Node string
	OK   bool
}

// Released reports a Release or Revoke action finished.
type Released struct{}

// Clock reports whether the node's clock is synchronised (the time
// service's status), with what it says.
type Clock struct {
	Synced bool
	Detail string
}

func (Tick) event() string            { return "tick" }
func (e Poll) event() string          { return "poll " + e.State.String(e.OK) }
func (e Acquired) event() string      { return fmt.Sprintf("acquired token=%d", e.Token) }
func (e AcquireFailed) event() string { return "acquire-failed " + e.Err }
func (e Renewed) event() string       { return "renewed sent=" + fmtT(e.SentAt) }
func (e Done) event() string {
	if e.Err != "" {
		return fmt.Sprintf("done %s %s err=%q", e.Op, e.Resource, e.Err)
	}
	return fmt.Sprintf("done %s %s", e.Op, e.Resource)
}
func (e MonitorFailed) event() string { return fmt.Sprintf("monitor-failed %s %q", e.Resource, e.Err) }
func (e Fenced) event() string        { return fmt.Sprintf("fenced %s ok=%v", e.Node, e.OK) }
func (Released) event() string        { return "released" }
func (e Clock) event() string         { return fmt.Sprintf("clock synced=%v %q", e.Synced, e.Detail) }

// String describes the state for traces.
func (s ClusterState) String(ok bool) string {
	if !ok {
		return "failed"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "owner=%q token=%d", s.Owner, s.Token)
	if s.Released {
		b.WriteString(" released")
	}
	for _, n := range sortedKeys(s.Standby) {
		if s.Standby[n] {
			fmt.Fprintf(&b, " standby=%s", n)
		}
	}
	for _, n := range sortedKeys(s.FailCounts) {
		for _, r := range sortedKeys(s.FailCounts[n]) {
			fmt.Fprintf(&b, " fail[%s/%s]=%d", n, r, s.FailCounts[n][r])
		}
	}
	if s.MoveTo != "" {
		fmt.Fprintf(&b, " move=%s", s.MoveTo)
	}
	if s.Maintenance {
		b.WriteString(" maintenance")
	}
	for _, n := range sortedKeys(s.Online) {
		if !s.Online[n] {
			fmt.Fprintf(&b, " offline=%s", n)
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var epoch = time.Unix(0, 0).UTC()

func fmtT(t time.Time) string { return fmt.Sprintf("%.1fs", t.Sub(epoch).Seconds()) }

// Op is a resource operation.
type Op string

// The operations the core orders.
const (
	OpStart Op = "start"
	OpStop  Op = "stop"
)

// Action is an output of the core, for the daemon to carry out.
type Action interface{ String() string }

// Acquire asks to create the group's owner key under a fresh lease.
type Acquire struct{}

// Resource asks to start or stop a resource; a start must be refused
// unless the node still holds the lease with Token.
type Resource struct {
	Op       Op
	Resource string
	Token    int64
}

// Release asks to hand the group over cleanly: mark the owner key
// released (only if its revision is still Token) and revoke the lease.
type Release struct{ Token int64 }

// Drop asks to stop renewing a lease the core considers lost.
type Drop struct{ Token int64 }

// Revoke asks to remove a fenced owner's key (only if still at Token).
type Revoke struct {
	Node  string
	Token int64
}

// IncFail asks to add one to this node's fail count of Resource, and to
// make it at least AtLeast (a failed start takes it to the threshold).
type IncFail struct {
	Resource string
	AtLeast  int
}

// ClearMove asks to remove a completed move request.
type ClearMove struct{}

// Watchdog asks to arm, pet or disarm the watchdog.
type Watchdog struct{ Op string }

// Fence asks the fencing agent to power off Node.
type Fence struct{ Node string }

// ResetComing says the core has stopped petting the armed watchdog: unless
// the group stops first (and the watchdog is disarmed), it resets this
// node at about At. Renewed is when the last renewal etcd answered was
// sent, Expiry the earliest moment the lease can expire. The daemon logs
// it and keeps it on perm, so the reset says why (on the next boot too).
type ResetComing struct {
	At, Renewed, Expiry time.Time
	Why                 string
}

func (Acquire) String() string    { return "acquire" }
func (a Resource) String() string { return fmt.Sprintf("%s %s token=%d", a.Op, a.Resource, a.Token) }
func (a Release) String() string  { return fmt.Sprintf("release token=%d", a.Token) }
func (a Drop) String() string     { return fmt.Sprintf("drop token=%d", a.Token) }
func (a Revoke) String() string   { return fmt.Sprintf("revoke %s token=%d", a.Node, a.Token) }
func (a IncFail) String() string {
	return fmt.Sprintf("incfail %s to at least %d", a.Resource, a.AtLeast)
}
func (ClearMove) String() string  { return "clear-move" }
func (a Watchdog) String() string { return "watchdog " + a.Op }
func (a Fence) String() string    { return "fence " + a.Node }
func (a ResetComing) String() string {
	return fmt.Sprintf("reset-coming at=%s renewed=%s expiry=%s: %s", fmtT(a.At), fmtT(a.Renewed), fmtT(a.Expiry), a.Why)
}
