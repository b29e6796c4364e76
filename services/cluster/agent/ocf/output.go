package ocf

import (
	"fmt"
	"strings"
)

// MaxOutput bounds what the daemon keeps of one action's stdout and
// stderr: the first and the last MaxOutput/2 bytes, so that a runaway
// agent cannot exhaust the daemon's memory while both the start of its
// output (what it was doing) and the end (why it failed) survive.
const MaxOutput = 64 << 10

// capped is an io.Writer that keeps the first len(head) and the last
// len(tail) bytes written to it and counts the rest. exec.Cmd writes to it
// from one goroutine at a time when it is both Stdout and Stderr.
type capped struct {
	head    []byte // up to cap(head) bytes, filled first
	tail    []byte // a ring of cap(tail) bytes once head is full
	next    int    // where the ring's next byte goes
	written int64  // bytes written in all
}

func newCapped(max int) *capped {
	return &capped{head: make([]byte, 0, max/2), tail: make([]byte, 0, max-max/2)}
}

// Write keeps what fits and never fails.
func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	c.written += int64(n)
	k := min(cap(c.head)-len(c.head), len(p))
	c.head, p = append(c.head, p[:k]...), p[k:]
	if len(p) > cap(c.tail) {
		p = p[len(p)-cap(c.tail):]
	}
	for len(p) > 0 {
		if len(c.tail) < cap(c.tail) {
			k = min(cap(c.tail)-len(c.tail), len(p))
			c.tail, p = append(c.tail, p[:k]...), p[k:]
			continue
		}
		k = copy(c.tail[c.next:], p)
		c.next, p = (c.next+k)%len(c.tail), p[k:]
	}
	return n, nil
}

// dropped is how many bytes were written and not kept.
func (c *capped) dropped() int64 {
	return c.written - int64(len(c.head)+len(c.tail))
}

// String is the kept output, with a marker where bytes were dropped.
func (c *capped) String() string {
	var b strings.Builder
	b.Write(c.head)
	if d := c.dropped(); d > 0 {
		fmt.Fprintf(&b, "\n[ocf: %d bytes of output dropped]\n", d)
	}
	b.Write(c.tail[c.next:])
	b.Write(c.tail[:c.next])
	return b.String()
}
