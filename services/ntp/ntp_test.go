package ntp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is off from the host's clock by skew; Step moves it, Slew
// only records. It never touches the host's clock.
type fakeClock struct {
	mu           sync.Mutex
	skew         time.Duration
	steps, slews []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

func (c *fakeClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew += d
	c.steps = append(c.steps, d)
	return nil
}

func (c *fakeClock) Slew(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slews = append(c.slews, d)
	return nil
}

// fakeServer answers SNTP on loopback with the host's time plus offset.
func fakeServer(t *testing.T, offset time.Duration, stratum byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		_ = Server{Now: func() time.Time { return time.Now().Add(offset) }, Stratum: stratum}.Serve(pc)
	}()
	return pc.LocalAddr().String()
}

func near(got, want, tol time.Duration) bool { return abs(got-want) <= tol }

func TestStepAtBootThenSlew(t *testing.T) {
	clk := &fakeClock{skew: -5 * time.Second}
	srv := fakeServer(t, 0, 2)
	s := New(Config{Servers: []string{srv}, StepThreshold: time.Second, PollInterval: time.Minute, MaxOffset: 100 * time.Millisecond, Clock: clk})
	st, err := s.Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if len(clk.steps) != 1 || !near(clk.steps[0], 5*time.Second, 50*time.Millisecond) || len(clk.slews) != 0 {
		t.Fatalf("first Poll: steps %v slews %v, want one step of ~5s", clk.steps, clk.slews)
	}
	if !st.Synchronised || !st.Stepped || !near(st.Offset, 5*time.Second, 50*time.Millisecond) {
		t.Errorf("status after step = %+v, want synchronised, stepped, offset ~5s", st)
	}
	st, err = s.Poll(context.Background())
	if err != nil {
		t.Fatalf("second Poll = %v", err)
	}
	if len(clk.steps) != 1 || len(clk.slews) != 1 || !near(clk.slews[0], 0, 50*time.Millisecond) {
		t.Errorf("second Poll: steps %v slews %v, want no new step and a slew of ~0", clk.steps, clk.slews)
	}
	if !st.Synchronised || !near(st.Offset, 0, 50*time.Millisecond) {
		t.Errorf("status after second poll = %+v, want synchronised, offset ~0", st)
	}
}

func TestSmallOffsetIsSlewedNotStepped(t *testing.T) {
	clk := &fakeClock{skew: 300 * time.Millisecond}
	s := New(Config{Servers: []string{fakeServer(t, 0, 2)}, StepThreshold: time.Second, PollInterval: time.Minute, MaxOffset: 100 * time.Millisecond, Clock: clk})
	st, err := s.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(clk.steps) != 0 || len(clk.slews) != 1 || !near(clk.slews[0], -300*time.Millisecond, 50*time.Millisecond) {
		t.Errorf("steps %v slews %v, want one slew of ~-300ms", clk.steps, clk.slews)
	}
	if !st.Synchronised {
		t.Errorf("status = %+v, want synchronised (first sync within the step threshold)", st)
	}
	// Later, far off again: never stepped after boot, and reported unsynchronised.
	clk.skew = 3 * time.Second
	st, _ = s.Poll(context.Background())
	if len(clk.steps) != 0 || st.Synchronised {
		t.Errorf("after boot, 3s off: steps %v, status %+v; want no step, unsynchronised", clk.steps, st)
	}
}

func TestMedianOfServers(t *testing.T) {
	clk := &fakeClock{}
	dead, _ := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	defer dead.Close()
	s := New(Config{
		Servers: []string{fakeServer(t, 2*time.Second, 2), fakeServer(t, 2200*time.Millisecond, 3),
			fakeServer(t, 50*time.Second, 1), fakeServer(t, 0, 16), dead.LocalAddr().String()},
		StepThreshold: time.Second, PollInterval: time.Minute, MaxOffset: 100 * time.Millisecond,
		Clock: clk, Timeout: time.Second,
	})
	st, err := s.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Samples) != 3 {
		t.Errorf("samples = %+v, want 3 (stratum 16 and the silent server dropped)", st.Samples)
	}
	if !near(st.Offset, 2200*time.Millisecond, 50*time.Millisecond) || len(clk.steps) != 1 {
		t.Errorf("offset = %v, steps %v; want the median ~2.2s stepped once", st.Offset, clk.steps)
	}
}

func TestNoServerIsUnsynchronised(t *testing.T) {
	dead, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer dead.Close()
	s := New(Config{Servers: []string{dead.LocalAddr().String()}, Clock: &fakeClock{}, Timeout: 200 * time.Millisecond, PollInterval: time.Minute})
	st, err := s.Poll(context.Background())
	if !errors.Is(err, ErrNoServer) || st.Synchronised {
		t.Errorf("Poll with no answer = %+v, %v; want unsynchronised, ErrNoServer", st, err)
	}
}

func TestParseAnswer(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good := func() []byte {
		b := make([]byte, 48)
		b[0], b[1] = 4<<3|4, 2
		binary.BigEndian.PutUint64(b[32:40], toNTP(t1.Add(1500*time.Millisecond)))
		binary.BigEndian.PutUint64(b[40:48], toNTP(t1.Add(1600*time.Millisecond)))
		return b
	}
	for _, tc := range []struct {
		name   string
		edit   func([]byte)
		offset time.Duration
		bad    bool
	}{
		{name: "good", edit: func([]byte) {}, offset: 1500 * time.Millisecond},
		{name: "client mode", edit: func(b []byte) { b[0] = 4<<3 | 3 }, bad: true},
		{name: "kiss of death", edit: func(b []byte) { b[1] = 0; copy(b[12:], "RATE") }, bad: true},
		{name: "stratum 16", edit: func(b []byte) { b[1] = 16 }, bad: true},
		{name: "alarm", edit: func(b []byte) { b[0] |= 3 << 6 }, bad: true},
		{name: "zero transmit", edit: func(b []byte) { clear(b[40:48]) }, bad: true},
	} {
		b := good()
		tc.edit(b)
		// t2-t1 = 1.5s, t3-t4 = 1.4s: offset 1.45s; delay 0.2s-0.1s.
		smp, err := parseAnswer(b, t1, t1.Add(200*time.Millisecond))
		if tc.bad {
			if !errors.Is(err, ErrBadAnswer) {
				t.Errorf("%s: parseAnswer = %+v, %v; want ErrBadAnswer", tc.name, smp, err)
			}
			continue
		}
		if err != nil || !near(smp.Offset, 1450*time.Millisecond, time.Microsecond) || !near(smp.Delay, 100*time.Millisecond, time.Microsecond) {
			t.Errorf("%s: parseAnswer = %+v, %v; want offset 1.45s, delay 100ms", tc.name, smp, err)
		}
	}
}

func TestNTPTimestampRoundTrip(t *testing.T) {
	want := time.Date(2026, 11, 22, 6, 7, 8, 123456789, time.UTC)
	if got := fromNTP(toNTP(want)); !near(got.Sub(want), 0, time.Nanosecond) {
		t.Errorf("fromNTP(toNTP(%v)) = %v", want, got)
	}
}
