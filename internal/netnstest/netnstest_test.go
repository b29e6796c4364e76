package netnstest

import (
	"net"
	"strings"
	"testing"
)

func TestLinkCarriesTraffic(t *testing.T) {
	n := New(t)
	a, b := n.Host("a"), n.Host("b")
	n.Link(a, "eth0", "10.99.0.1/24", b, "eth0", "10.99.0.2/24")
	out := n.Run(a, "ping", "-c", "1", "-W", "2", "10.99.0.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping a->b = %q, want 1 received", out)
	}
}

func TestDoOpensSocketsInNamespace(t *testing.T) {
	n := New(t)
	a, b := n.Host("a"), n.Host("b")
	n.Link(a, "eth0", "10.99.1.1/24", b, "eth0", "10.99.1.2/24")
	var ln net.Listener
	if err := n.Do(b, func() (err error) {
		ln, err = net.Listen("tcp", "10.99.1.2:7777")
		return err
	}); err != nil {
		t.Fatalf("Do(listen in b) = %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
	out := n.Run(a, "bash", "-c", "exec 3<>/dev/tcp/10.99.1.2/7777; cat <&3")
	if out != "hello" {
		t.Fatalf("read from listener in b = %q, want hello", out)
	}
}
