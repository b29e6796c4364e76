package dns

import (
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"tandem/internal/nodeconfig"
)

// RateLimit is response-rate limiting over UDP per client network (a /32
// for IPv4, a /56 for IPv6), like BIND's RRL: a network's responses pass
// while its bucket of PerSecond tokens, refilled at PerSecond a second,
// has one; past that a response is dropped, except every Slip-th dropped
// one, which is sent as an empty answer with TC=1 so that a real client
// retries over TCP. TCP is never limited (a TCP client cannot spoof its
// address, so it reflects nothing), nor is loopback. The limit is checked
// when the query arrives, so a dropped query costs no upstream query
// either.
type RateLimit struct {
	// PerSecond is each network's rate and burst; 0 turns the limit off.
	PerSecond int
	// Slip: every Slip-th dropped response is sent truncated; 0 drops
	// them all.
	Slip int
	// MaxSources bounds the networks tracked; past it an idle one, or
	// else any, is forgotten. 0 is nodeconfig.DefaultDNSMaxSources.
	MaxSources int
}

// verdict is what the rate limit makes of one response.
type verdict int

const (
	pass verdict = iota
	drop
	slip // send an empty answer with TC=1 instead
)

func (v verdict) String() string {
	return [...]string{pass: "pass", drop: "drop", slip: "slip"}[v]
}

// limiter is RateLimit's state, a token bucket per network kept as one
// time (the generic cell rate algorithm): when its bucket is full again.
type limiter struct {
	interval time.Duration // the time one token takes to refill
	burst    time.Duration // how far past now a bucket's time may be
	slip     uint64
	max      int
	now      func() time.Time

	mu   sync.Mutex
	nets map[netip.Addr]*bucket
}

type bucket struct {
	full    time.Time // when the bucket is full again
	dropped uint64
}

// newLimiter returns nil for a limit that is off.
func newLimiter(rl RateLimit, now func() time.Time) *limiter {
	if rl.PerSecond <= 0 {
		return nil
	}
	if rl.MaxSources <= 0 {
		rl.MaxSources = nodeconfig.DefaultDNSMaxSources
	}
	interval := time.Second / time.Duration(rl.PerSecond)
	return &limiter{
		interval: interval,
		burst:    time.Duration(rl.PerSecond-1) * interval,
		slip:     uint64(max(rl.Slip, 0)),
		max:      rl.MaxSources,
		now:      now,
		nets:     map[netip.Addr]*bucket{},
	}
}

// network is the key of a's bucket: a itself for IPv4, its /56 for IPv6
// (what one customer gets).
func network(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(56)
	return p.Addr()
}

// check takes a token for a response to a, or says what to do instead.
func (l *limiter) check(a netip.Addr) verdict {
	if l == nil || a.IsLoopback() {
		return pass
	}
	key := network(a)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.nets[key]
	if b == nil {
		l.makeRoom(now)
		b = &bucket{full: now}
		l.nets[key] = b
	}
	if b.full.Before(now) {
		b.full = now
	}
	if b.full.Sub(now) > l.burst {
		b.dropped++
		if l.slip > 0 && b.dropped%l.slip == 0 {
			return slip
		}
		return drop
	}
	b.full = b.full.Add(l.interval)
	return pass
}

// evictScan is how many networks makeRoom looks at, so that a flood from
// new sources costs a bounded time per query.
const evictScan = 32

// makeRoom forgets networks until one more fits: the idle among evictScan
// (their buckets are full: nothing is lost), or else one of them (which
// starts again with a full bucket: a flood from more networks than
// MaxSources gets more through, and no new client is ever refused).
func (l *limiter) makeRoom(now time.Time) {
	if len(l.nets) < l.max {
		return
	}
	var busy netip.Addr
	scanned := 0
	for k, b := range l.nets {
		if b.full.After(now) {
			busy = k
		} else {
			delete(l.nets, k)
		}
		if scanned++; scanned == evictScan {
			break
		}
	}
	if len(l.nets) >= l.max {
		delete(l.nets, busy)
	}
}

// tracked is the number of networks the limiter holds.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.nets)
}

// rateLimit applies the limit to the answer to r: limited reports that
// the limit decided, m is what to send then (nil: nothing).
func (s *Server) rateLimit(from netip.Addr, r *mdns.Msg) (m *mdns.Msg, limited bool) {
	switch s.limit.check(from) {
	case drop:
		s.limited.Add(1)
		return nil, true
	case slip:
		s.limited.Add(1)
		m = new(mdns.Msg)
		m.SetReply(r)
		m.Truncated = true
		return m, true
	}
	return nil, false
}
