package network

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"tandem/internal/netnstest"
)

// BenchmarkDHCPLease measures the time from the service's start of DHCP
// to an applied lease from dnsmasq in a namespace (the daemon's own
// figure, without process start-up), and reports the median.
func BenchmarkDHCPLease(b *testing.B) {
	n := netnstest.New(b)
	node, srv := n.Host("node"), n.Host("dhcp")
	n.Link(node, "eth0", "", srv, "eth0", "10.67.0.1/24")
	dnsmasqDHCP(b, n, srv)
	var took []time.Duration
	for b.Loop() {
		cmd, _, sc := helper(b, n, node, "run", dhcpConfig)
		ev := nextEvent(b, sc, EventLease, 30*time.Second)
		took = append(took, ev.Took)
		cmd.Process.Signal(syscall.SIGTERM)
		nextEvent(b, sc, EventReleased, 10*time.Second)
		cmd.Wait()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms/lease(median)")
}
