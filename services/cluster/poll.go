package cluster

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/cluster/core"
)

// view is what the last successful poll saw, beyond the core's state.
type view struct {
	ok      bool
	at      time.Time
	state   core.ClusterState
	members []Member
	rstates map[string]map[string]string // node -> resource -> state
	failAt  time.Time
}

// pollLoop reads the cluster state with one linearizable transaction per
// interval; a failure means no quorum (or no etcd).
func (d *Daemon) pollLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.Timing.PollInterval)
	defer t.Stop()
	for {
		ev := d.poll(ctx)
		d.send(ctx, ev)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Daemon) poll(ctx context.Context) core.Poll {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ops := []clientv3.Op{
		clientv3.OpGet(keyOwner), clientv3.OpGet(keyMove), clientv3.OpGet(keyMaintenance),
		clientv3.OpGet(prefixStandby, clientv3.WithPrefix()), clientv3.OpGet(prefixFail, clientv3.WithPrefix()),
		clientv3.OpGet(prefixAlive, clientv3.WithPrefix()), clientv3.OpGet(prefixNodes, clientv3.WithPrefix()),
		clientv3.OpGet(prefixRState, clientv3.WithPrefix()),
	}
	r, err := d.cli.Txn(c).Then(ops...).Commit()
	if err != nil {
		d.mu.Lock()
		if d.view.ok || d.view.failAt.IsZero() {
			d.log.Warn("cluster state unreadable (no quorum?)", "err", err)
			d.view.failAt = time.Now()
		}
		d.view.ok = false
		d.mu.Unlock()
		return core.Poll{OK: false}
	}
	kvs := func(i int) []*mvccKV {
		var out []*mvccKV
		for _, kv := range r.Responses[i].GetResponseRange().Kvs {
			out = append(out, &mvccKV{string(kv.Key), string(kv.Value), kv.ModRevision})
		}
		return out
	}
	s := core.ClusterState{Standby: map[string]bool{}, FailCounts: map[string]map[string]int{}, Online: map[string]bool{}}
	if o := kvs(0); len(o) > 0 {
		s.Owner, s.Token, s.Released = o[0].v, o[0].rev, o[0].v == ""
	}
	if m := kvs(1); len(m) > 0 {
		s.MoveTo = m[0].v
	}
	s.Maintenance = len(kvs(2)) > 0
	for _, kv := range kvs(3) {
		s.Standby[strings.TrimPrefix(kv.k, prefixStandby)] = true
	}
	for _, kv := range kvs(4) {
		nr := strings.SplitN(strings.TrimPrefix(kv.k, prefixFail), "/", 2)
		if len(nr) == 2 {
			if s.FailCounts[nr[0]] == nil {
				s.FailCounts[nr[0]] = map[string]int{}
			}
			s.FailCounts[nr[0]][nr[1]], _ = strconv.Atoi(kv.v)
		}
	}
	var members []Member
	for _, kv := range kvs(6) {
		var m Member
		if json.Unmarshal([]byte(kv.v), &m) == nil {
			members = append(members, m)
			s.Online[m.Name] = false
		}
	}
	for _, kv := range kvs(5) {
		s.Online[strings.TrimPrefix(kv.k, prefixAlive)] = true
	}
	rstates := map[string]map[string]string{}
	for _, kv := range kvs(7) {
		var m map[string]string
		if json.Unmarshal([]byte(kv.v), &m) == nil {
			rstates[strings.TrimPrefix(kv.k, prefixRState)] = m
		}
	}
	d.mu.Lock()
	if !d.view.ok {
		d.log.Info("cluster state readable (quorum)")
	}
	d.view = view{ok: true, at: time.Now(), state: s, members: members, rstates: rstates}
	d.mu.Unlock()
	return core.Poll{OK: true, State: s}
}

type mvccKV struct {
	k, v string
	rev  int64
}

// aliveLoop keeps /tandem/alive/NODE under its own lease, so others see
// this node online.
func (d *Daemon) aliveLoop(ctx context.Context) {
	// Shorter than the group's lease (but at least etcd's 2s minimum):
	// a dead owner shows offline before its lease expires, so a
	// configured fencing agent can power it off and the peer take over
	// early.
	ttl := int64(d.cfg.CoreTiming().LeaseTTL/time.Second) - 1
	if ttl < 2 {
		ttl = 2
	}
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		lg, err := d.cli.Grant(c, ttl)
		if err == nil {
			_, err = d.cli.Put(c, prefixAlive+d.cfg.Node, "1", clientv3.WithLease(lg.ID))
		}
		cancel()
		if err == nil {
			ch, kerr := d.cli.KeepAlive(ctx, lg.ID)
			if kerr == nil {
				for range ch {
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
