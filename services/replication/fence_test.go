package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// fakeCluster answers OutdatePeer with a scripted outcome and records the
// calls.
type fakeCluster struct {
	outcome PeerFence
	err     error
	calls   []string
}

func (f *fakeCluster) OutdatePeer(_ context.Context, res, peer string) (PeerFence, error) {
	f.calls = append(f.calls, "outdate "+res+" "+peer)
	return f.outcome, f.err
}

func (f *fakeCluster) ClearOutdated(_ context.Context, res, node string) error {
	f.calls = append(f.calls, "clear "+res+" "+node)
	return f.err
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFencePeer(t *testing.T) {
	c := testConfig()
	env := envOf(map[string]string{"DRBD_RESOURCE": "data"})
	for _, tc := range []struct {
		name      string
		self      string
		env       func(string) string
		outcome   PeerFence
		err       error
		want      int
		wantCalls string
	}{
		{"peer outdated", "tandem-a", env, PeerOutdated, nil, 4, "[outdate data tandem-b]"},
		{"peer stonithed", "tandem-a", env, PeerStonithed, nil, 7, "[outdate data tandem-b]"},
		{"peer unreachable", "tandem-b", env, PeerUnreachable, nil, 5, "[outdate data tandem-a]"},
		{"peer inconsistent", "tandem-a", env, PeerInconsistent, nil, 3, "[outdate data tandem-b]"},
		{"peer primary: refuse", "tandem-a", env, PeerPrimary, nil, 6, "[outdate data tandem-b]"},
		{"no quorum: stay frozen", "tandem-a", env, 0, errors.New("no quorum"), ExitFailed, "[outdate data tandem-b]"},
		{"nonsense answer: stay frozen", "tandem-a", env, PeerFence(0), nil, ExitFailed, "[outdate data tandem-b]"},
		{"other resource", "tandem-a", envOf(map[string]string{"DRBD_RESOURCE": "other"}), PeerOutdated, nil, ExitFailed, "[]"},
		{"not a data node", "arbiter", env, PeerOutdated, nil, ExitFailed, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := &fakeCluster{outcome: tc.outcome, err: tc.err}
			got := FencePeer(context.Background(), &c, tc.self, cl, tc.env, t.Logf)
			if got != tc.want {
				t.Errorf("FencePeer() = %d, want %d", got, tc.want)
			}
			if s := fmt.Sprint(cl.calls); s != tc.wantCalls {
				t.Errorf("cluster calls %s, want %s", s, tc.wantCalls)
			}
		})
	}
}

func TestAfterResyncTarget(t *testing.T) {
	c := testConfig()
	env := envOf(map[string]string{"DRBD_RESOURCE": "data"})
	cl := &fakeCluster{}
	if got := AfterResyncTarget(context.Background(), &c, "tandem-b", cl, env, t.Logf); got != 0 {
		t.Errorf("AfterResyncTarget() = %d, want 0", got)
	}
	if s := fmt.Sprint(cl.calls); s != "[clear data tandem-b]" {
		t.Errorf("cluster calls %s, want [clear data tandem-b]", s)
	}
	cl = &fakeCluster{err: errors.New("no quorum")}
	if got := AfterResyncTarget(context.Background(), &c, "tandem-b", cl, env, t.Logf); got != ExitFailed {
		t.Errorf("AfterResyncTarget() with no quorum = %d, want %d", got, ExitFailed)
	}
}
