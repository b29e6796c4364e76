package pid1

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Log writes init's lines to the console and keeps the last ones in a ring
// buffer that the control socket serves ("log").
type Log struct {
	mu    sync.Mutex
	out   io.Writer
	ring  []string
	next  int
	full  bool
	start time.Time
}

// NewLog returns a log of at most lines lines writing to out.
func NewLog(out io.Writer, lines int) *Log {
	return &Log{out: out, ring: make([]string, lines), start: time.Now()}
}

// Logf logs one line, prefixed with the component.
func (l *Log) Logf(format string, args ...any) {
	l.Printf("init: "+format, args...)
}

// Printf logs a line as given (for the "tandem: ..." markers).
func (l *Log) Printf(format string, args ...any) {
	line := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	stamped := fmt.Sprintf("[%8.3f] %s", time.Since(l.start).Seconds(), line)
	l.ring[l.next] = stamped
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	fmt.Fprintf(l.out, "%s\r\n", line)
}

// Lines returns the buffered lines, oldest first.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]string(nil), l.ring[:l.next]...)
	}
	return append(append([]string(nil), l.ring[l.next:]...), l.ring[:l.next]...)
}
