package netnstest

import (
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
