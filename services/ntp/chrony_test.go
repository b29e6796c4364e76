package ntp

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/netnstest"
	"tandem/internal/testenv"
)

// TestAgainstChrony measures the offset against chronyd (serving its
// local clock, told with -x never to touch the clock) in another
// namespace, over a veth link, with a fake clock 4 s behind: the service
// steps it by +4 s once, then slews by about nothing.
func TestAgainstChrony(t *testing.T) {
	n := netnstest.New(t)
	testenv.RequireTool(t, "chronyd")
	node, srv := n.Host("node"), n.Host("ntp")
	n.Link(node, "eth0", "10.123.0.2/24", srv, "eth0", "10.123.0.1/24")
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	testenv.WriteFile(t, conf, []byte("local stratum 8\nallow all\nbindaddress 10.123.0.1\nport 123\ncmdport 0\n"+
		"pidfile "+filepath.Join(dir, "chronyd.pid")+"\n"), 0o644)
	n.Start(n.Cmd(t.Context(), srv, "chronyd", "-d", "-x", "-u", "root", "-f", conf))

	clk := &fakeClock{skew: -4 * time.Second}
	s := New(Config{
		Servers:       []string{"10.123.0.1", "10.123.0.9"}, // the second never answers
		StepThreshold: time.Second, PollInterval: time.Minute, MaxOffset: 100 * time.Millisecond,
		Timeout: 500 * time.Millisecond, Clock: clk,
		Dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = n.Do(node, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	var st Status
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for st, err = s.Poll(t.Context()); err != nil; st, err = s.Poll(t.Context()) {
		if time.Now().After(deadline) {
			t.Fatalf("chronyd never answered usably: %v (%+v)", err, st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(st.Samples) != 1 || st.Samples[0].Server != "10.123.0.1" || st.Samples[0].Stratum != 8 {
		t.Errorf("samples = %+v, want one from 10.123.0.1 at stratum 8 (local stratum 8)", st.Samples)
	}
	if len(clk.steps) != 1 || !near(clk.steps[0], 4*time.Second, 50*time.Millisecond) {
		t.Fatalf("steps = %v, want one of ~+4s", clk.steps)
	}
	if !st.Synchronised || !st.Stepped || !near(st.Offset, 4*time.Second, 50*time.Millisecond) {
		t.Errorf("status after the boot step = %+v, want synchronised, stepped, offset ~4s", st)
	}
	st, err = s.Poll(t.Context())
	if err != nil {
		t.Fatalf("second poll: %v", err)
	}
	if len(clk.steps) != 1 || len(clk.slews) != 1 || !near(clk.slews[0], 0, 50*time.Millisecond) {
		t.Errorf("second poll: steps %v, slews %v; want no new step, one slew of ~0", clk.steps, clk.slews)
	}
	if !st.Synchronised || !near(st.Offset, 0, 50*time.Millisecond) {
		t.Errorf("status after the second poll = %+v, want synchronised within 50ms", st)
	}
	t.Logf("offset after the step: %v, delay %v", st.Offset, st.Samples[0].Delay)
}
