package cluster

import (
	"context"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/cluster/core"
)

// acquire creates the owner key under a fresh lease if the key is absent
// or released; the txn's revision is the fencing token.
func (d *Daemon) acquire(ctx context.Context) {
	t := d.cfg.CoreTiming()
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
	defer cancel()
	lg, err := d.cli.Grant(c, int64(t.LeaseTTL/time.Second))
	if err != nil {
		d.send(ctx, core.AcquireFailed{Err: err.Error()})
		return
	}
	put := clientv3.OpPut(keyOwner, d.cfg.Node, clientv3.WithLease(lg.ID))
	r, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(keyOwner), "=", 0)).Then(put).
		Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(keyOwner), "=", "")}, []clientv3.Op{put}, nil)).Commit()
	ok := err == nil && (r.Succeeded || r.Responses[0].GetResponseTxn().Succeeded)
	if !ok {
		go func() { _, _ = d.cli.Revoke(context.Background(), lg.ID) }() // unrevoked, it expires by its TTL
		msg := "the group has an owner"
		if err != nil {
			msg = err.Error()
		}
		d.send(ctx, core.AcquireFailed{Err: msg})
		return
	}
	token := r.Header.Revision
	lctx, lcancel := context.WithCancel(ctx)
	d.mu.Lock()
	d.lease = leaseState{id: lg.ID, token: token, cancel: lcancel}
	d.mu.Unlock()
	d.log.Info("acquired the group's lease", "token", token, "lease", fmt.Sprintf("%x", lg.ID))
	d.send(ctx, core.Acquired{Token: token, SentAt: sent})
	go d.renew(lctx, lg.ID)
}

type leaseState struct {
	id     clientv3.LeaseID
	token  int64
	cancel context.CancelFunc
}

func (d *Daemon) renew(ctx context.Context, id clientv3.LeaseID) {
	t := d.cfg.CoreTiming()
	tick := time.NewTicker(t.RenewInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Each renewal runs on its own and may take as long as it can
		// still be of use (ttl - stop_margin): on a loaded machine a
		// round trip can outlast the interval, and the core counts a
		// renewal from when it was sent, whenever the answer comes, so a
		// slow one is safe and keeps the lease where a cut-off one lost it.
		go func(sent time.Time) {
			c, cancel := context.WithTimeout(ctx, t.LeaseTTL-t.StopMargin)
			defer cancel()
			if _, err := d.cli.KeepAliveOnce(c, id); err == nil {
				d.send(ctx, core.Renewed{SentAt: sent})
			} else if ctx.Err() == nil {
				d.log.Warn("lease renewal failed", "sent", sent.Format(time.StampMilli), "err", err)
			}
		}(time.Now())
	}
}

// tokenValid reports whether this node still holds the lease with token,
// checked locally and then in etcd (the owner key's revision).
//
// A check etcd does not answer in time is asked again while this node
// still holds the token (its lease is renewed or dropped meanwhile), for
// up to tokenCheckFor: on a loaded node a slow answer is no failure of
// the resource, and counting it as one barred the node.
func (d *Daemon) tokenValid(ctx context.Context, token int64) error {
	for end := time.Now().Add(tokenCheckFor); ; {
		d.mu.Lock()
		held := d.lease.token
		d.mu.Unlock()
		if held == 0 || held != token {
			return fmt.Errorf("fencing token %d is not held (holding %d)", token, held)
		}
		c, cancel := context.WithTimeout(ctx, d.cfg.pollTimeout())
		r, err := d.cli.Txn(c).If(
			clientv3.Compare(clientv3.ModRevision(keyOwner), "=", token),
			clientv3.Compare(clientv3.Value(keyOwner), "=", d.cfg.Node)).Commit()
		cancel()
		switch {
		case err == nil && r.Succeeded:
			return nil
		case err == nil:
			return fmt.Errorf("fencing token %d is stale", token)
		case ctx.Err() != nil || time.Now().After(end):
			return fmt.Errorf("check fencing token %d: %w", token, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// tokenCheckFor bounds tokenValid's retries.
const tokenCheckFor = 30 * time.Second

func (d *Daemon) takeLease(token int64) (leaseState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lease
	if l.token == 0 || (token != 0 && l.token != token) {
		return l, false
	}
	if l.cancel != nil {
		l.cancel()
	}
	d.lease = leaseState{}
	return l, true
}

func (d *Daemon) release(ctx context.Context, token int64) {
	l, ok := d.takeLease(token)
	if ok {
		c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
		_, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(keyOwner), "=", token)).
			Then(clientv3.OpPut(keyOwner, "")).Commit()
		if err == nil {
			_, err = d.cli.Revoke(c, l.id)
		}
		cancel()
		if err != nil {
			d.log.Warn("release: the lease will expire instead", "err", err)
		}
	}
	d.send(ctx, core.Released{})
}

func (d *Daemon) dropLease(token int64) {
	if l, ok := d.takeLease(token); ok {
		go func() {
			c, cancel := context.WithTimeout(context.Background(), d.cfg.requestTimeout())
			defer cancel()
			_, _ = d.cli.Revoke(c, l.id) // unrevoked, it expires by its TTL
		}()
	}
}

func (d *Daemon) revokeOwner(ctx context.Context, node string, token int64) {
	c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
	defer cancel()
	_, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(keyOwner), "=", token)).Then(clientv3.OpDelete(keyOwner)).Commit()
	if err != nil {
		d.log.Error("revoke fenced owner", "node", node, "err", err)
	}
}

// incFail raises this node's fail count of res by one, to at least
// atLeast. The count lives for policy.failure_timeout after the raise.
func (d *Daemon) incFail(ctx context.Context, res string, atLeast int) {
	k := failKey(d.cfg.Node, res)
	for i := 0; i < 10 && ctx.Err() == nil; i++ {
		c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
		r, err := d.cli.Get(c, k)
		if err == nil {
			n, rev := 0, int64(0)
			if len(r.Kvs) > 0 {
				n, _ = strconv.Atoi(string(r.Kvs[0].Value))
				rev = r.Kvs[0].ModRevision
			}
			n = max(n+1, atLeast)
			var opts []clientv3.OpOption
			opts, err = d.failCountLease(c)
			var tr *clientv3.TxnResponse
			if err == nil {
				tr, err = d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, strconv.Itoa(n), opts...)).Commit()
			}
			if err == nil && tr.Succeeded {
				cancel()
				d.log.Warn("fail count raised", "resource", res, "count", n)
				return
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	d.log.Error("could not raise fail count", "resource", res)
}

// failCountLease gives a fail count written now the lifetime of
// policy.failure_timeout: a fresh lease at each raise (the previous one,
// left without keys, just expires).
func (d *Daemon) failCountLease(ctx context.Context) ([]clientv3.OpOption, error) {
	ttl := d.cfg.FailureTimeout()
	if ttl == 0 {
		return nil, nil
	}
	lg, err := d.cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, err
	}
	return []clientv3.OpOption{clientv3.WithLease(lg.ID)}, nil
}

func (d *Daemon) clearMove(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
	defer cancel()
	if _, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.Value(keyMove), "=", d.cfg.Node)).Then(clientv3.OpDelete(keyMove)).Commit(); err != nil {
		d.log.Warn("clear the finished move (tandemctl move clears it too)", "err", err)
	}
}
