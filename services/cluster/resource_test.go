package cluster

import (
	"errors"
	"fmt"
	"testing"
)

func TestMonitorCounts(t *testing.T) {
	slow := errors.New("imap login: i/o timeout")
	gone := fmt.Errorf("mail: %w", ErrNotRunning)
	r := &resource{cfg: ResourceConfig{MonitorFailures: 3}}
	steps := []struct {
		err  error
		want bool
	}{
		{slow, false}, {slow, false}, {nil, false}, // a success forgets the two
		{slow, false}, {slow, false}, {slow, true}, // the third in a row counts
		{slow, false}, // and the count starts again
		{gone, true},  // not running counts at once
		{slow, false}, {slow, false}, {slow, true},
	}
	for i, s := range steps {
		if got := r.monitorCounts(s.err); got != s.want {
			t.Fatalf("step %d (%v): counts = %v, want %v", i, s.err, got, s.want)
		}
	}
	one := &resource{cfg: ResourceConfig{MonitorFailures: 1}}
	for i := range 2 {
		if !one.monitorCounts(slow) {
			t.Errorf("monitor_failures 1: failure %d did not count; every failure must", i+1)
		}
	}
}
