package cluster

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/golden"
	"tandem/internal/testenv"

	"tandem/services/mail/mailtls"
	"tandem/services/replication"
)

func TestFormatStatus(t *testing.T) {
	nodes := []NodeStatus{
		{Name: "a", Role: "data", Online: true},
		{Name: "b", Role: "data", Online: true, Standby: true},
		{Name: "c", Role: "arbitrator", Online: true},
	}
	group := []ResourceStatus{
		{Name: "fs", Agent: "ocf:heartbeat:Filesystem", States: map[string]string{"a": "started", "b": "stopped"}},
		{Name: "vip", Agent: "vip", States: map[string]string{"a": "started"}, FailCounts: map[string]int{"b": 2}},
	}
	tests := []struct {
		name string
		s    Status
	}{
		{"healthy", Status{Cluster: "mail", Node: "a", Role: "data", Quorum: true, Phase: "running", Held: true, Token: 42,
			Owner: "a", OwnerToken: 42, Nodes: nodes, Group: group}},
		{"no-quorum", Status{Cluster: "mail", Node: "b", Role: "data", Phase: "idle", Owner: "a", OwnerToken: 42,
			Reason: "no quorum: this node cannot reach a majority of the cluster; resources stay stopped",
			Nodes:  []NodeStatus{{Name: "a", Role: "data"}, {Name: "b", Role: "data", Online: true}, {Name: "c", Role: "arbitrator"}},
			Group:  []ResourceStatus{{Name: "vip", Agent: "vip", States: map[string]string{"b": "stopped"}}}}},
		// A joined node still catching up does not vote: two voters online
		// of three members, and the status says so.
		{"learner", Status{Cluster: "mail", Node: "c", Role: "arbitrator", Quorum: true, Phase: "idle",
			Reason: "arbitrator: never runs resources", Owner: "a", OwnerToken: 42,
			Nodes: []NodeStatus{{Name: "a", Role: "data", Online: true}, {Name: "b", Role: "data", Online: true, Learner: true},
				{Name: "c", Role: "arbitrator", Online: true}}, Group: group}},
		// Reads failing, for less than the quorum grace: the last view,
		// said to be old.
		{"reads-failing", Status{Cluster: "mail", Node: "b", Role: "data", Quorum: true, Phase: "idle",
			Owner: "a", OwnerToken: 42, StateAge: "2.1s", ReadsFailing: true, Nodes: nodes, Group: group}},
		// The mail certificate, 10 days before it expires.
		{"mail-cert", Status{Cluster: "mail", Node: "a", Role: "data", Quorum: true, Phase: "running", Held: true, Token: 42,
			Owner: "a", OwnerToken: 42, Nodes: nodes, Group: group, Time: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
			MailCert: &MailCert{Source: CertInstalled, Info: mailtls.Info{Subject: "mail.example.org", NotAfter: time.Date(2026, 12, 11, 13, 0, 0, 0, time.UTC)}}}},
		// The fence devices' last checks: one answers, one does not.
		{"fence", Status{Cluster: "mail", Node: "a", Role: "data", Quorum: true, Phase: "running", Held: true, Token: 42,
			Owner: "a", OwnerToken: 42, Nodes: nodes, Group: group, Time: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
			Fence: []FenceCheck{{Target: "a", By: "b", At: time.Date(2026, 12, 1, 11, 59, 48, 0, time.UTC), Error: "ipmi 192.0.2.21:623 as fence: i/o timeout"},
				{Target: "b", By: "a", At: time.Date(2026, 12, 1, 11, 59, 30, 0, time.UTC), Power: "on"}}}},
		{"maintenance-moving", Status{Cluster: "mail", Node: "c", Role: "arbitrator", Quorum: true, Phase: "idle",
			Reason: "arbitrator: never runs resources", Maintenance: true, MoveTo: "b", Nodes: nodes,
			Group: []ResourceStatus{{Name: "vip", Agent: "vip", States: map[string]string{"a": "stopping"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			FormatStatus(&b, tt.s)
			golden.Check(t, filepath.Join("testdata", "status-"+tt.name+".golden"), b.Bytes())
		})
	}
}

func TestReadMemory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	testenv.WriteFile(t, p, []byte("MemTotal:        1000448 kB\nMemFree:          500000 kB\nMemAvailable:     800000 kB\n"), 0o644)
	m := readMemory(p)
	if m == nil || m.TotalKiB != 1000448 || m.AvailableKiB != 800000 || m.UsedMiB() != 195 {
		t.Errorf("readMemory = %+v", m)
	}
	testenv.WriteFile(t, p, []byte("garbage\n"), 0o644)
	if m := readMemory(p); m != nil {
		t.Errorf("readMemory of garbage = %+v, want nil", m)
	}
}

func TestFormatReplication(t *testing.T) {
	rs := &ReplicationStatus{Resource: "mail", Seeded: "data-a", Outdated: []string{"data-b"}, Nodes: map[string]replication.Status{
		"data-a": {Up: true, Role: "Primary", Disk: "UpToDate", Connection: "StandAlone", PeerRole: "Unknown", PeerDisk: "DUnknown", Suspended: "fencing"},
		"data-b": {Up: false},
	}}
	var b strings.Builder
	FormatReplication(&b, rs)
	for _, want := range []string{"Replicated volume mail (created by data-a)", "data-a:    Primary", "I/O FROZEN (fencing)",
		"data-b:    down", "Outdated (may not be promoted until resynced): data-b", "resolve-split-brain -keep NODE"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("FormatReplication lacks %q:\n%s", want, b.String())
		}
	}
}
