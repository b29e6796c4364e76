package cluster

import (
	"net"
	"testing"
	"time"
)

func TestSourceLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newSourceLimiter(3, time.Minute)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if !l.allowed("10.0.0.9") {
			t.Fatalf("refused after %d failures, limit 3", i)
		}
		l.failed("10.0.0.9")
	}
	if l.allowed("10.0.0.9") {
		t.Error("allowed after 3 failures")
	}
	if !l.allowed("10.0.0.8") {
		t.Error("another address is turned away too")
	}
	now = now.Add(time.Minute)
	if !l.allowed("10.0.0.9") {
		t.Error("still turned away after the window")
	}
	// Full: the oldest windows make room once they end, not before.
	l = newSourceLimiter(1, time.Minute)
	l.now = func() time.Time { return now }
	for i := range maxSources {
		l.failed(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String())
	}
	if l.allowed("192.0.2.1") {
		t.Error("a new address allowed while the table is full of live windows")
	}
	now = now.Add(time.Minute)
	if !l.allowed("192.0.2.1") || len(l.sources) != 0 {
		t.Errorf("after the windows ended: allowed=%v with %d sources kept", l.allowed("192.0.2.1"), len(l.sources))
	}
}

// fakeListener hands out the connections pushed into it.
type fakeListener struct{ conns chan net.Conn }

func (f *fakeListener) Accept() (net.Conn, error) { return <-f.conns, nil }
func (f *fakeListener) Close() error              { return nil }
func (f *fakeListener) Addr() net.Addr            { return &net.TCPAddr{} }

// fakeConn is a connection from addr that records its closing.
type fakeConn struct {
	net.Conn
	addr   string
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { a, _ := net.ResolveTCPAddr("tcp", c.addr); return a }

// Close is called by capListener under its lock (isClosed reads it so).
func (c *fakeConn) Close() error { c.closed = true; return nil }

func isClosed(l *capListener, c *fakeConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return c.closed
}

func TestCapListener(t *testing.T) {
	f := &fakeListener{conns: make(chan net.Conn, 10)}
	l := newCapListener(f, 3, 2)
	accept := func(addr string) *fakeConn {
		c := &fakeConn{addr: addr}
		f.conns <- c
		return c
	}
	a1 := accept("10.0.0.1:1")
	a2 := accept("10.0.0.1:2")
	a3 := accept("10.0.0.1:3") // third from one address: closed
	b1 := accept("10.0.0.2:1")
	var got []net.Conn
	for range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if a1.closed || a2.closed || !a3.closed || b1.closed {
		t.Fatalf("closed: %v %v %v %v, want only the third from 10.0.0.1", a1.closed, a2.closed, a3.closed, b1.closed)
	}
	// At the cap the next connection is closed; once one closes, the one
	// after that gets in.
	c1 := accept("10.0.0.3:1")
	next := make(chan net.Conn)
	go func() {
		c, _ := l.Accept()
		next <- c
	}()
	for !isClosed(l, c1) {
		time.Sleep(time.Millisecond)
	}
	if err := got[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := got[0].Close(); err != nil { // twice: counted once
		t.Fatal(err)
	}
	c2 := accept("10.0.0.3:2")
	if c := <-next; c.(*capConn).Conn != c2 {
		t.Errorf("after a close, Accept gave %v, want the next connection", c)
	}
	if l.total != 3 || l.by["10.0.0.1"] != 1 {
		t.Errorf("counts total=%d 10.0.0.1=%d, want 3 and 1", l.total, l.by["10.0.0.1"])
	}
}
