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

// TestRestoreCode: a consumed code is written back; a code that exists
// (restored already, its answer lost) is left as it is.
func TestRestoreCode(t *testing.T) {
	cli := testEtcd(t)
	d := &Daemon{cfg: &Config{}, cli: cli, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	ck := prefixPairing + "J6V8"
	d.restoreCode(ctx, ck, []byte("first"))
	d.restoreCode(ctx, ck, []byte("second"))
	r, err := cli.Get(ctx, ck)
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "first" {
		t.Fatalf("code after two restores: %v, %v; want the first value, once", r, err)
	}
}
