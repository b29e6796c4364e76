// Package servicetest plays the supervisor's side of sd_notify for the
// daemons' tests.
package servicetest

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NotifySocket listens on a datagram socket in a temporary directory and
// returns its path (for NOTIFY_SOCKET) and the messages sent to it.
func NotifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// WaitMessage returns the first message containing want, failing the test
// if none comes within limit.
func WaitMessage(t *testing.T, ch <-chan string, want string, limit time.Duration) string {
	t.Helper()
	timeout := time.After(limit)
	for {
		select {
		case m := <-ch:
			if strings.Contains(m, want) {
				return m
			}
		case <-timeout:
			t.Fatalf("no sd_notify message with %q", want)
		}
	}
}
