package cluster

import (
	"net"
	"sync"
	"time"
)

// sourceLimiter counts refusals per source address in a fixed window, as
// OpenSSH's per-source penalties do: after max refusals within window an
// address is turned away until its window ends. It tracks at most
// maxSources addresses; when full, it forgets the ones whose windows
// ended, and if none has, it turns new addresses away (a flood from that
// many addresses is not a joiner).
type sourceLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	sources map[string]*window
}

type window struct {
	start time.Time
	fails int
}

const maxSources = 4096

func newSourceLimiter(max int, w time.Duration) *sourceLimiter {
	return &sourceLimiter{max: max, window: w, now: time.Now, sources: map[string]*window{}}
}

// allowed reports whether src may try.
func (l *sourceLimiter) allowed(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.sources[src]
	if w == nil {
		return len(l.sources) < maxSources || l.sweep()
	}
	if l.now().Sub(w.start) >= l.window {
		delete(l.sources, src)
		return true
	}
	return w.fails < l.max
}

// failed counts a refusal of src.
func (l *sourceLimiter) failed(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w := l.sources[src]
	if w == nil || now.Sub(w.start) >= l.window {
		if w == nil && len(l.sources) >= maxSources && !l.sweep() {
			return
		}
		w = &window{start: now}
		l.sources[src] = w
	}
	w.fails++
}

// sweep forgets the addresses whose windows ended and reports whether
// there is room now.
func (l *sourceLimiter) sweep() bool {
	now := l.now()
	for s, w := range l.sources {
		if now.Sub(w.start) >= l.window {
			delete(l.sources, s)
		}
	}
	return len(l.sources) < maxSources
}

// capListener closes a connection at once when max are open, or
// perSource from its address: a client that holds connections open
// cannot take the API from the others, nor one address from all.
type capListener struct {
	net.Listener
	max, perSource int

	mu    sync.Mutex
	total int
	by    map[string]int
}

func newCapListener(ln net.Listener, max, perSource int) *capListener {
	return &capListener{Listener: ln, max: max, perSource: perSource, by: map[string]int{}}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		ok := l.total < l.max && l.by[src] < l.perSource
		if ok {
			l.total++
			l.by[src]++
		} else {
			c.Close()
		}
		l.mu.Unlock()
		if !ok {
			continue
		}
		return &capConn{Conn: c, l: l, src: src}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	src  string
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.total--
		if c.l.by[c.src]--; c.l.by[c.src] == 0 {
			delete(c.l.by, c.src)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
