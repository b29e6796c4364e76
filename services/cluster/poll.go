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
	// failAt is when reads began to fail (zero while they succeed);
	// failLogged says the failure was logged and reported to the core.
	failAt     time.Time
	failLogged bool
}

// pollLoop reads the cluster state with one linearizable transaction per
// interval; a failure means no quorum (or no etcd).
func (d *Daemon) pollLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.Timing.PollInterval)
	defer t.Stop()
	for {
		if ev, ok := d.poll(ctx); ok {
			d.send(ctx, ev)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll reads the cluster state. A read that fails is reported to the
// core (as no quorum) only once no read has succeeded for quorumGrace;
// until then the core keeps the state it has, and waits for a fresh one
// where it needs one (needPoll).
func (d *Daemon) poll(ctx context.Context) (core.Poll, bool) {
	c, cancel := context.WithTimeout(ctx, d.cfg.pollTimeout())
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
		defer d.mu.Unlock()
		if d.view.failAt.IsZero() {
			d.view.failAt = time.Now()
		}
		since := d.view.at
		if since.IsZero() {
			since = d.started
		}
		if time.Since(since) < d.cfg.quorumGrace() {
			return core.Poll{}, false
		}
		if d.view.ok || !d.view.failLogged {
			d.log.Warn("cluster state unreadable: no quorum, or etcd too slow to answer", "err", err,
				"last_read", since.Format(time.StampMilli), "read_timeout", d.cfg.pollTimeout().String())
			d.view.failLogged = true
		}
		d.view.ok = false
		return core.Poll{OK: false}, true
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
	if d.view.failLogged {
		d.log.Info("cluster state readable (quorum)", "unreadable_for", time.Since(d.view.failAt).Round(100*time.Millisecond).String())
	}
	d.view = view{ok: true, at: time.Now(), state: s, members: members, rstates: rstates}
	d.mu.Unlock()
	return core.Poll{OK: true, State: s}, true
}

type mvccKV struct {
	k, v string
	rev  int64
}

// aliveLoop keeps /tandem/alive/NODE under its own lease, so others see
// this node online.
func (d *Daemon) aliveLoop(ctx context.Context) {
	ttl := int64(aliveTTL(d.cfg) / time.Second)
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, 2*d.cfg.requestTimeout())
		lg, err := d.cli.Grant(c, ttl)
		if err == nil {
			_, err = d.cli.Put(c, prefixAlive+d.cfg.Node, "1", clientv3.WithLease(lg.ID))
		}
		cancel()
		if err != nil {
			d.log.Debug("alive key", "err", err)
		}
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

// aliveTTL is the alive key's lease: shorter than the group's (but at
// least etcd's 2s minimum), so a dead owner shows offline before its lease
// expires and a peer with a fence device can power it off and take over
// early. Without fencing, a second less: only the status screen reads it.
// With fencing, half the lease, as the watchdog's timeout: etcd's client
// renews it every third of its TTL, so a dead owner's key goes 2/3 to 3/3
// of a TTL after its death, and with L-1 that left the peer a second or
// less (after a leader change, which renews every lease, exactly one)
// between the key's expiry and the lease's; in the lab, with polls a
// second apart, the peer never saw it and took over at the lease's
// expiry instead. A node stalled that long is one its own watchdog may
// reset already.
func aliveTTL(c *Config) time.Duration {
	l := c.CoreTiming().LeaseTTL
	ttl := l - time.Second
	if len(c.Fencing) > 0 {
		ttl = (l / 2).Truncate(time.Second)
	}
	return max(2*time.Second, ttl)
}

// memberLoop reads etcd's member list every few seconds, so status can
// say which members vote: a learner (a node that joined and has not caught
// up) is a member that does not count towards quorum. It also does the
// housekeeping of certs.go: learners that never start, the revocation
// list, the CA key, renewal and expired codes.
func (d *Daemon) memberLoop(ctx context.Context) {
	seen := map[uint64]time.Time{}
	var lastChores time.Time
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
		ml, err := d.cli.MemberList(c)
		if err == nil {
			learners := map[string]bool{}
			var ms []*memberInfo
			for _, m := range ml.Members {
				if m.IsLearner {
					learners[memberName(m.Name, m.PeerURLs)] = true
				}
				ms = append(ms, &memberInfo{id: m.ID, name: m.Name, learner: m.IsLearner, peerURLs: m.PeerURLs})
			}
			d.mu.Lock()
			d.learners = learners
			d.mu.Unlock()
			d.dropStaleLearners(c, ms, seen, time.Now())
		}
		if err := d.syncCRL(c); err != nil {
			d.log.Debug("revocation list", "err", err)
		}
		if err := d.writeDNSView(c); err != nil {
			d.log.Warn("dns view (it is retried)", "err", err)
		}
		cancel()
		if _, err := d.st.Read("ca.key"); err != nil {
			// Every round until it comes: the replication link waits
			// for it (drbdSecret).
			c, cancel := context.WithTimeout(ctx, 3*d.cfg.requestTimeout())
			if err := d.fetchCAKey(c); err != nil {
				d.log.Debug("CA key: not yet from the other members", "err", err)
			}
			cancel()
		}
		if time.Since(lastChores) > time.Minute {
			lastChores = time.Now()
			d.chores(ctx)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// chores are memberLoop's slow housekeeping, once a minute.
func (d *Daemon) chores(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, 3*d.cfg.requestTimeout())
	defer cancel()
	if _, err := d.renewIfDue(c, time.Now()); err != nil {
		d.log.Warn("renew the node certificate (it is retried)", "err", err)
	}
	if err := d.sweepCodes(c, time.Now()); err != nil {
		d.log.Debug("sweep pairing codes", "err", err)
	}
	if svc, ok := d.mailService(); ok {
		if err := d.ensureMailSite(c, svc, time.Now()); err != nil {
			d.log.Warn("mail certificate (it is retried)", "err", err)
		}
	}
}

// memberName is an etcd member's name, or for a learner that has not
// started yet (etcd knows only its peer URL) that URL.
func memberName(name string, peerURLs []string) string {
	if name != "" || len(peerURLs) == 0 {
		return name
	}
	return peerURLs[0]
}
