package replication

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The testdata/events2-*.txt files are drbdsetup events2 --now
// --statistics output captured in TestGuestFailover's guests (rewrite them
// with go test -run TestGuestFailover -update as root).
func TestParseEvents2(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Status
	}{
		{"syncing", Status{Up: true, Role: "Primary", Suspended: "no", Disk: "UpToDate", Connection: "Connected",
			Replication: "WFBitMapS", PeerRole: "Secondary", PeerDisk: "Inconsistent", OutOfSyncKiB: 65496}},
		{"primary-connected", Status{Up: true, Role: "Primary", Suspended: "no", Disk: "UpToDate", Connection: "Connected",
			Replication: "Established", PeerRole: "Secondary", PeerDisk: "UpToDate"}},
		{"secondary-connected", Status{Up: true, Role: "Secondary", Suspended: "no", Disk: "UpToDate", Connection: "Connected",
			Replication: "Established", PeerRole: "Primary", PeerDisk: "UpToDate"}},
		{"secondary-cut", Status{Up: true, Role: "Secondary", Suspended: "no", Disk: "UpToDate", Connection: "Connecting",
			Replication: "Off", PeerRole: "Unknown", PeerDisk: "DUnknown"}},
		{"primary-fenced", Status{Up: true, Role: "Primary", Suspended: "no", Disk: "UpToDate", Connection: "Connecting",
			Replication: "Off", PeerRole: "Unknown", PeerDisk: "Outdated"}},
		{"primary-frozen", Status{Up: true, Role: "Primary", Suspended: "fencing", Disk: "UpToDate", Connection: "Connecting",
			Replication: "Off", PeerRole: "Unknown", PeerDisk: "DUnknown"}},
		{"down", Status{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "events2-"+tc.file+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseEvents2(f, "data")
			if err != nil || got != tc.want {
				t.Errorf("ParseEvents2(%s) = %+v, %v\nwant %+v", tc.file, got, err, tc.want)
			}
		})
	}
}

func TestParseEvents2OtherResource(t *testing.T) {
	b, err := os.ReadFile("testdata/events2-primary-connected.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEvents2(strings.NewReader(string(b)), "mail")
	if err != nil || got.Up {
		t.Errorf("ParseEvents2(data's output, mail) = %+v, %v, want not up", got, err)
	}
}

func TestParseEvents2BadNumber(t *testing.T) {
	in := "exists peer-device name:data volume:0 replication:Established peer-disk:UpToDate out-of-sync:lots\n"
	if _, err := ParseEvents2(strings.NewReader(in), "data"); err == nil {
		t.Errorf("ParseEvents2(out-of-sync:lots) = nil error, want one")
	}
}

func TestConnected(t *testing.T) {
	for _, tc := range []struct {
		s    Status
		want bool
	}{
		{Status{Connection: "Connected", Disk: "UpToDate", PeerDisk: "UpToDate"}, true},
		{Status{Connection: "Connected", Disk: "UpToDate", PeerDisk: "Inconsistent"}, false},
		{Status{Connection: "Connecting", Disk: "UpToDate", PeerDisk: "Outdated"}, false},
	} {
		if got := tc.s.Connected(); got != tc.want {
			t.Errorf("%+v.Connected() = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestResourceStatus(t *testing.T) {
	b, err := os.ReadFile("testdata/events2-primary-fenced.txt")
	if err != nil {
		t.Fatal(err)
	}
	loaded := true
	cmd := &fakeCmd{outputs: map[string]string{"drbdsetup events2 --now --statistics data": string(b)}}
	r := testResource(cmd, &loaded, Metadata84)
	s, err := r.Status(context.Background())
	if err != nil || s.PeerDisk != "Outdated" || s.Role != "Primary" {
		t.Errorf("Status() = %+v, %v, want Primary with the peer Outdated", s, err)
	}
	cmd.fail = map[string]bool{"drbdsetup events2 --now --statistics data": true}
	if _, err := r.Status(context.Background()); err == nil {
		t.Errorf("Status() with drbdsetup failing = nil error, want one")
	}
}
