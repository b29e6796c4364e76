package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/services/ntp"
)

// testNetns gives a Lab value only its namespace: one made for the test,
// with HostAddr on its loopback device, so nothing is reachable but what
// the test serves there.
func testNetns(t *testing.T) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	l := &Lab{netns: fmt.Sprintf("tandem-lab-test-%d", os.Getpid()), opts: Options{Logf: t.Logf}}
	for _, args := range [][]string{
		{"netns", "add", l.netns},
		{"-n", l.netns, "link", "set", "lo", "up"},
		{"-n", l.netns, "addr", "add", HostAddr.String() + "/24", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = exec.Command("ip", "netns", "del", l.netns).Run()
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = removeNetns(l.netns) })
	return l
}

// TestDialReachesTheNamespace: a listener that exists only inside the
// lab's namespace answers a connection made with Dial.
func TestDialReachesTheNamespace(t *testing.T) {
	l := testNetns(t)
	ln, err := l.Listen("tcp4", HostAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("220 lab\r\n"))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if string(b) != "220 lab\r\n" || err != nil {
		t.Errorf("read from %s = %q, %v; want the banner", ln.Addr(), b, err)
	}
	if _, err := l.Dial(ctx, "tcp", "node.lab:25"); err == nil {
		t.Error(`Dial("node.lab:25") = nil error, want one (names are not resolved)`)
	}
}

// stillClock is a time service clock that must never be corrected: the
// host's clock, read only.
type stillClock struct{ t *testing.T }

func (stillClock) Now() time.Time { return time.Now() }
func (c stillClock) Step(d time.Duration) error {
	c.t.Errorf("time service stepped the clock by %v", d)
	return nil
}
func (stillClock) Slew(time.Duration) error { return nil }

// TestSNTPServer queries the lab's SNTP server on HostAddr:123 with the
// nodes' own time client, through Dial.
func TestSNTPServer(t *testing.T) {
	l := testNetns(t)
	if err := l.serveTime(); err != nil {
		t.Fatal(err)
	}
	defer l.ntp.Close()
	st, err := sntpQuery(t, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Samples) != 1 || st.Samples[0].Stratum != 1 || st.Offset.Abs() > time.Second {
		t.Errorf("poll of %s = %+v, want one stratum-1 sample, offset under 1s (same clock)", HostAddr, st)
	}
	if got := l.Status().NTPRequests; got[HostAddr.String()] != 1 {
		t.Errorf("Status().NTPRequests = %v, want one from %s", got, HostAddr)
	}
}

// sntpQuery polls the lab's SNTP server once with the time service.
func sntpQuery(t *testing.T, l *Lab) (ntp.Status, error) {
	s := ntp.New(ntp.Config{
		Servers: []string{HostAddr.String()}, StepThreshold: time.Hour, MaxOffset: time.Second,
		PollInterval: time.Minute, Timeout: 10 * time.Second, Clock: stillClock{t}, Dial: l.Dial,
	})
	return s.Poll(context.Background())
}
