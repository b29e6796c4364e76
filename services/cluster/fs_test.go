package cluster

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
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

// testEtcd starts a one-member etcd on loopback for the test and returns
// a client of it.
func testEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "fatal"
	lc, _ := url.Parse("http://127.0.0.1:0")
	lp, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*lc}, []url.URL{*lc}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*lp}, []url.URL{*lp}
	cfg.InitialCluster = cfg.Name + "=" + lp.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	return cli
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
