package cluster

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFormatClaim: the first node to claim a volume's format gets it; the
// same claim again (a retry after a lost answer) is still its own; another
// node, or the same node under a later lease, is refused with the name of
// the node that formatted.
func TestFormatClaim(t *testing.T) {
	cli := testEtcd(t)

	agent := func(node string, token int64) *fsAgent {
		d := &Daemon{cfg: &Config{Node: node}, cli: cli, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		d.lease.token = token
		return &fsAgent{d: d, device: "/dev/drbd0", dir: "/srv/mail"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := prefixFS + "/srv/mail"
	if err := agent("data-a", 14).claim(ctx, k); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := agent("data-a", 14).claim(ctx, k); err != nil {
		t.Errorf("the same claim again (its answer lost): %v", err)
	}
	for _, c := range []struct {
		node  string
		token int64
	}{{"data-b", 59}, {"data-a", 301}} {
		err := agent(c.node, c.token).claim(ctx, k)
		if err == nil || !strings.Contains(err.Error(), "but data-a made one for /srv/mail before") {
			t.Errorf("claim by %s under token %d: %v, want a refusal naming data-a", c.node, c.token, err)
		}
	}
}

// TestRestoreCode: a used code is written back unused; a code that
// changed since (restored already, its answer lost) is left as it is.
func TestRestoreCode(t *testing.T) {
	cli := testEtcd(t)
	d := &Daemon{cfg: &Config{}, cli: cli, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	ck := prefixPairing + "J6V8"
	p, err := cli.Put(ctx, ck, "used")
	if err != nil {
		t.Fatal(err)
	}
	d.restoreCode(ctx, ck, p.Header.Revision, []byte("first"))
	d.restoreCode(ctx, ck, p.Header.Revision, []byte("second"))
	r, err := cli.Get(ctx, ck)
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "first" {
		t.Fatalf("code after two restores: %v, %v; want the first value, once", r, err)
	}
}

// TestFindMount: the topmost mount on the directory is found, and read-only
// whether the mount or only its filesystem is (ext4 after an error with
// errors=remount-ro keeps the mount's options rw).
func TestFindMount(t *testing.T) {
	const info = `22 1 0:21 / /proc rw,nosuid - proc proc rw
40 22 147:0 / /srv/mail rw,noatime shared:1 - ext4 /dev/drbd0 rw,errors=remount-ro
41 40 147:0 / /srv/mail rw,noatime - ext4 /dev/drbd0 ro,errors=remount-ro
50 22 8:3 / /srv/other ro,noatime - ext4 /dev/sda3 rw
51 22 8:4 / /srv/fine rw,noatime - ext4 /dev/sda4 rw,errors=remount-ro
52 22 8:5 / /srv/rootish rw - ext4 /dev/sda5 rootdir=x
`
	for _, tt := range []struct {
		dir    string
		want   *mountEntry
		absent bool
	}{
		{"/srv/mail", &mountEntry{source: "/dev/drbd0", readOnly: true}, false},
		{"/srv/other", &mountEntry{source: "/dev/sda3", readOnly: true}, false},
		{"/srv/fine", &mountEntry{source: "/dev/sda4"}, false},
		{"/srv/rootish", &mountEntry{source: "/dev/sda5"}, false},
		{"/srv/none", nil, true},
	} {
		got, err := findMount(strings.NewReader(info), tt.dir)
		if err != nil || (got == nil) != tt.absent || (got != nil && *got != *tt.want) {
			t.Errorf("findMount(%s) = %+v, %v; want %+v", tt.dir, got, err, tt.want)
		}
	}
}
