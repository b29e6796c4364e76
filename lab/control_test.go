package lab

import (
	"strings"
	"testing"
)

// TestControlPowerOps sends the power operations through the control
// socket of a lab with one node that was never booted: each reaches the
// lab and comes back with the lab's error.
func TestControlPowerOps(t *testing.T) {
	dir := t.TempDir()
	l := &Lab{opts: Options{Dir: dir, Nodes: Nodes[:1], Logf: t.Logf}}
	if err := l.serveControl(); err != nil {
		t.Fatal(err)
	}
	defer l.ctl.Close()
	for _, c := range []struct {
		op    string
		nodes []string
		want  string
	}{
		{"boot", nil, "boot: want one node, got 0"},
		{"boot", []string{"nope"}, "nope: no such node"},
		{"reboot", []string{"nope"}, "nope: no such node"},
		{"shutdown", []string{"nope"}, "nope: no such node"},
		{"shutdown", []string{"data-a", "data-b"}, "shutdown: want one node, got 2"},
		{"poweroff", nil, `unknown op "poweroff"`},
	} {
		_, err := Control(dir, c.op, c.nodes...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Control(%s, %v) = %v, want an error containing %q", c.op, c.nodes, err, c.want)
		}
	}
}
