package cluster

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestRenewIfDue: a node certificate is renewed (same key, new serial,
// still a node's, recorded for revocation) once a third of its lifetime
// is left, and not before.
func TestRenewIfDue(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData), "x")
	if err != nil {
		t.Fatal(err)
	}
	st := State{Dir: t.TempDir()}
	if _, err := Create(c, st, nil); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: c, st: st, cli: testEtcd(t), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	old, _ := st.Read("node.crt")
	oc, _ := ParseCert(old)
	if renewed, err := d.renewIfDue(ctx, oc.NotAfter.Add(-NodeLifetime/2)); renewed || err != nil {
		t.Fatalf("renewed at half the lifetime: %v, %v", renewed, err)
	}
	if renewed, err := d.renewIfDue(ctx, oc.NotAfter.Add(-NodeLifetime/4)); !renewed || err != nil {
		t.Fatalf("not renewed with a quarter left: %v, %v", renewed, err)
	}
	b, _ := st.Read("node.crt")
	nc, err := ParseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	if nc.SerialNumber.Cmp(oc.SerialNumber) == 0 || nc.NotAfter.Before(oc.NotAfter) || CertRole(nc) != CertNode || nc.Subject.CommonName != "a" {
		t.Errorf("renewed certificate: serial %v (was %v), until %v (was %v), role %q, CN %q", nc.SerialNumber, oc.SerialNumber, nc.NotAfter, oc.NotAfter, CertRole(nc), nc.Subject.CommonName)
	}
	if _, err := st.keyPair(); err != nil {
		t.Errorf("the renewed certificate does not match the node key: %v", err)
	}
	if s, _ := d.certsOf(ctx, "a", ""); len(s) != 1 || s[0] != serialHex(nc.SerialNumber) {
		t.Errorf("recorded certificates of a: %v, want the renewed one", s)
	}
}

// TestRecordResolve: the resolve record is written while the group runs
// on the kept node or nowhere (no owner key, or an empty one), in the
// same transaction that checks it, and refused naming the holder else.
func TestRecordResolve(t *testing.T) {
	cli := testEtcd(t)
	ctx := context.Background()
	for _, tt := range []struct {
		owner   *string
		refused bool
	}{{nil, false}, {ptr(""), false}, {ptr("data-a"), false}, {ptr("data-b"), true}} {
		if _, err := cli.Delete(ctx, "", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
		if tt.owner != nil {
			if _, err := cli.Put(ctx, keyOwner, *tt.owner); err != nil {
				t.Fatal(err)
			}
		}
		holder, refused, err := recordResolve(ctx, cli, "/r", "data-a", []byte("keep data-a"))
		g, _ := cli.Get(ctx, "/r")
		if err != nil || refused != tt.refused || (len(g.Kvs) == 0) != tt.refused || (refused && holder != "data-b") {
			t.Errorf("owner %v: holder %q, refused %v, err %v, record written %v", tt.owner, holder, refused, err, len(g.Kvs) > 0)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestDRBDSecret: both data nodes derive the same replication secret from
// the CA key, another cluster's CA gives another, and DRBD takes its form.
func TestDRBDSecret(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData), "x")
	if err != nil {
		t.Fatal(err)
	}
	secret := func(st State) string {
		t.Helper()
		cf, err := st.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		s, err := (&Daemon{st: st, cf: cf}).drbdSecret()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, other := State{Dir: t.TempDir()}, State{Dir: t.TempDir()}
	for _, st := range []State{a, other} {
		if _, err := Create(c, st, nil); err != nil {
			t.Fatal(err)
		}
	}
	b := State{Dir: t.TempDir()}
	for _, f := range []string{"ca.key", "cluster.json"} {
		v, _ := a.Read(f)
		if err := b.Write(f, v); err != nil {
			t.Fatal(err)
		}
	}
	sa := secret(a)
	if !regexp.MustCompile(`^[a-f0-9]{32}$`).MatchString(sa) || secret(b) != sa || secret(other) == sa {
		t.Errorf("secrets: a %q, b with a's CA key %q, another cluster %q", sa, secret(b), secret(other))
	}
	if _, err := (&Daemon{st: State{Dir: t.TempDir()}, cf: &ClusterFile{Cluster: "x"}}).drbdSecret(); err == nil || !strings.Contains(err.Error(), "waiting for the CA key") {
		t.Errorf("secret without a CA key: %v", err)
	}
}
