package dns

import (
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// cache keeps forwarded answers until their smallest TTL runs out. When
// full it drops an arbitrary entry: simple, and bounded.
type cache struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name         string
	qtype, class uint16
	do           bool
}

type cacheEntry struct {
	msg     *mdns.Msg
	stored  time.Time
	expires time.Time
}

func newCache(max int, now func() time.Time) *cache {
	return &cache{max: max, now: now, entries: map[cacheKey]cacheEntry{}}
}

func keyOf(r *mdns.Msg) cacheKey {
	q := r.Question[0]
	do := false
	if o := r.IsEdns0(); o != nil {
		do = o.Do()
	}
	return cacheKey{strings.ToLower(q.Name), q.Qtype, q.Qclass, do}
}

// get returns a copy of a live entry with TTLs lowered by its age.
func (c *cache) get(k cacheKey) *mdns.Msg {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	now := c.now()
	if !ok || !now.Before(e.expires) {
		return nil
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
				h.Ttl -= min(age, h.Ttl)
			}
		}
	}
	return m
}

// put stores an answer; failures and empty TTLs are not cached.
func (c *cache) put(k cacheKey, m *mdns.Msg) {
	if c.max <= 0 || m.Truncated || (m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError) {
		return
	}
	ttl := minTTL(m)
	if ttl == 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(time.Duration(ttl) * time.Second)}
}

// minTTL is the smallest TTL of the answer and authority sections (the
// SOA's minimum for negative answers), capped at an hour.
func minTTL(m *mdns.Msg) uint32 {
	ttl := uint32(3600)
	seen := false
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			t := rr.Header().Ttl
			if soa, ok := rr.(*mdns.SOA); ok && len(m.Answer) == 0 {
				t = min(t, soa.Minttl)
			}
			ttl, seen = min(ttl, t), true
		}
	}
	if !seen {
		return 0
	}
	return ttl
}
