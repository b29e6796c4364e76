// Package netnstest gives tests several hosts on one machine: network
// namespaces joined by veth links, created by the test and removed when it
// ends. Nothing is attached to the host's own namespace, so no test traffic
// can reach the machine's real network.
package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"tandem/internal/testenv"
)

// Net is a set of namespaces owned by one test.
type Net struct {
	t      testing.TB
	prefix string

	mu    sync.Mutex
	procs []*exec.Cmd
}

var seq struct {
	sync.Mutex
	n int
}

// New returns an empty Net; it requires root and the ip tool. Namespaces
// and processes started through it are removed in t.Cleanup.
func New(t testing.TB) *Net {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	seq.Lock()
	seq.n++
	n := &Net{t: t, prefix: fmt.Sprintf("tt%d-%d", pid(), seq.n)}
	seq.Unlock()
	t.Cleanup(n.cleanup)
	return n
}

// Host creates the namespace for a host with loopback up and returns its
// name, to pass to Cmd, Run and Link.
func (n *Net) Host(name string) string {
	n.t.Helper()
	ns := n.prefix + "-" + name
	n.mustIP("netns", "add", ns)
	n.Run(ns, "ip", "link", "set", "lo", "up")
	return ns
}

// Link joins namespaces a and b with a veth pair named by the caller
// (ifA in a, ifB in b), sets the given CIDR addresses (empty: none) and
// brings both ends up.
func (n *Net) Link(a, ifA, addrA, b, ifB, addrB string) {
	n.t.Helper()
	tmp := fmt.Sprintf("v%s%d", strings.ReplaceAll(n.prefix, "-", ""), n.nextID())
	n.mustIP("link", "add", tmp+"a", "netns", a, "type", "veth", "peer", "name", tmp+"b", "netns", b)
	n.Run(a, "ip", "link", "set", tmp+"a", "name", ifA)
	n.Run(b, "ip", "link", "set", tmp+"b", "name", ifB)
	for _, e := range []struct{ ns, ifc, addr string }{{a, ifA, addrA}, {b, ifB, addrB}} {
		if e.addr != "" {
			n.Run(e.ns, "ip", "addr", "add", e.addr, "dev", e.ifc)
		}
		n.Run(e.ns, "ip", "link", "set", e.ifc, "up")
	}
}

// Cmd returns a command that runs in namespace ns. Started with Start, it is
// killed (by PID) when the test ends.
func (n *Net) Cmd(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts cmd and registers it for killing at cleanup.
func (n *Net) Start(cmd *exec.Cmd) {
	n.t.Helper()
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %v: %v", cmd.Args, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
}

// Run runs a command in namespace ns, fails the test if it fails, and
// returns its combined output.
func (n *Net) Run(ns, name string, args ...string) string {
	n.t.Helper()
	out, err := n.Cmd(context.Background(), ns, name, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("in %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *Net) mustIP(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var ids struct {
	sync.Mutex
	n int
}

func (n *Net) nextID() int {
	ids.Lock()
	defer ids.Unlock()
	ids.n++
	return ids.n
}

func (n *Net) cleanup() {
	n.mu.Lock()
	for _, c := range n.procs {
		if c.Process != nil && c.ProcessState == nil {
			c.Process.Kill()
			_ = c.Wait() // killed
		}
	}
	n.mu.Unlock()
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], n.prefix+"-") {
			_ = exec.Command("ip", "netns", "del", f[0]).Run() // best effort: a leftover of a killed run
		}
	}
}

func pid() int { return os.Getpid() }
