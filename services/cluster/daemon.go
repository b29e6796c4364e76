package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"tandem/services/cluster/core"
	"tandem/services/cluster/fence"
	"tandem/services/cluster/watchdog"
)

// Daemon is one node's cluster daemon.
type Daemon struct {
	cfg *Config
	st  State
	log *slog.Logger
	cf  *ClusterFile

	etcd *embed.Etcd
	cli  *clientv3.Client
	wd   watchdog.Watchdog
	api  *http.Server
	fen  fence.Agents

	core   *core.Core
	events chan core.Event
	jobs   chan job
	res    map[string]*resource
	order  []string

	mu        sync.Mutex
	lease     leaseState
	view      view // last poll, for status
	statusRaw []byte

	nextMonitor map[string]time.Time
	monPending  bool
	monDone     chan struct{}
	rstatePut   string // resource states last published
	rstateAt    time.Time
	booted      atomic.Bool // bootstrap moved codes and CA key into etcd
}

type leaseState struct {
	id     clientv3.LeaseID
	token  int64
	cancel context.CancelFunc
}

// view is what the last successful poll saw, beyond the core's state.
type view struct {
	ok      bool
	at      time.Time
	state   core.ClusterState
	members []Member
	rstates map[string]map[string]string // node -> resource -> state
	failAt  time.Time
}

// job is one resource operation or monitor, run one at a time.
type job struct {
	op      core.Op // start, stop or "monitor"
	res     string
	token   int64
	monitor bool
}

// Options are the daemon's inputs besides its config.
type Options struct {
	Config *Config
	State  State
	Log    *slog.Logger
	// Ready is called once the API serves (sd_notify READY=1).
	Ready func()
}

// New checks the node is paired and builds its resources; Run starts it.
func New(ctx context.Context, o Options) (*Daemon, error) {
	cf, err := o.State.Cluster()
	if err != nil {
		return nil, err
	}
	if cf.Cluster != o.Config.Cluster {
		return nil, fmt.Errorf("state %s is of cluster %q, config says %q", o.State.Dir, cf.Cluster, o.Config.Cluster)
	}
	wd, err := watchdog.Open(o.Config.Watchdog)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg: o.Config, st: o.State, log: o.Log.With("component", "cluster"), cf: cf, wd: wd,
		core:   core.New(o.Config.CoreConfig()),
		events: make(chan core.Event, 256), jobs: make(chan job, 64), monDone: make(chan struct{}, 1),
		res: map[string]*resource{}, nextMonitor: map[string]time.Time{},
	}
	if d.fen, err = fencers(o.Config); err != nil {
		return nil, err
	}
	for _, rc := range o.Config.Group {
		r, err := newResource(ctx, rc)
		if err != nil {
			return nil, err
		}
		d.res[rc.Name] = r
		d.order = append(d.order, rc.Name)
	}
	return d, nil
}

// Run runs the daemon until ctx ends, then stops the group (if it runs
// here), releases the lease and stops etcd.
func (d *Daemon) Run(ctx context.Context, ready func()) error {
	d.writeStatusFile() // replace what a previous process left
	e, err := startEtcd(d.cfg, d.st, d.cf)
	if err != nil {
		return err
	}
	d.etcd = e
	defer e.Close()
	cli, err := newClient([]string{"https://" + hostPort("127.0.0.1", d.cfg.ClientPort)}, d.st)
	if err != nil {
		return err
	}
	d.cli = cli
	defer cli.Close()
	if err := d.serveAPI(); err != nil {
		return err
	}
	defer d.api.Close()
	d.log.Info("started", "node", d.cfg.Node, "role", d.cfg.Role, "members", d.cf.InitialCluster())
	if ready != nil {
		ready()
	}
	go promote(ctx, e, d.cf, d.cfg.Node, d.st, d.log)
	go d.bootstrap(ctx)
	go d.aliveLoop(ctx)
	go d.pollLoop(ctx)
	go d.execLoop(ctx)
	if d.cfg.Role == core.RoleData {
		go d.leaderLoop(ctx)
	}
	err = d.loop(ctx)
	d.shutdown()
	return err
}

func (d *Daemon) send(ctx context.Context, ev core.Event) {
	select {
	case d.events <- ev:
	case <-ctx.Done():
	}
}

func (d *Daemon) loop(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-d.etcd.Err():
			return fmt.Errorf("etcd: %w", err)
		case <-tick.C:
			d.step(ctx, core.Tick{})
			d.scheduleMonitors(ctx)
		case ev := <-d.events:
			d.step(ctx, ev)
		case <-d.monDone:
			d.monPending = false
		}
	}
}

func (d *Daemon) step(ctx context.Context, ev core.Event) {
	acts := d.core.Step(time.Now(), ev)
	for _, a := range acts {
		d.log.Debug("action", "action", a.String())
		d.do(ctx, a)
	}
	d.writeStatus()
}

func (d *Daemon) do(ctx context.Context, a core.Action) {
	switch a := a.(type) {
	case core.Acquire:
		go d.acquire(ctx)
	case core.Resource:
		d.log.Info("resource action", "op", a.Op, "resource", a.Resource, "token", a.Token)
		d.jobs <- job{op: a.Op, res: a.Resource, token: a.Token}
	case core.Release:
		d.log.Info("releasing the group", "token", a.Token)
		go d.release(ctx, a.Token)
	case core.Drop:
		d.log.Warn("lease lost: stopping the group before it can expire", "token", a.Token)
		d.dropLease(a.Token)
	case core.Revoke:
		go d.revokeOwner(ctx, a.Node, a.Token)
	case core.IncFail:
		go d.incFail(ctx, a.Resource)
	case core.ClearMove:
		go d.clearMove(ctx)
	case core.Watchdog:
		d.watchdog(a.Op)
	case core.Fence:
		go d.fence(ctx, a.Node)
	}
}

func fencers(c *Config) (fence.Agents, error) {
	a := fence.Agents{}
	for node, f := range c.Fencing {
		pw, err := os.ReadFile(f.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("fencing.%s.password_file: %w", node, err)
		}
		a[node] = &fence.IPMI{Host: f.Address, Port: f.Port, User: f.User, Password: strings.TrimSpace(string(pw)), CipherSuite: f.CipherSuite}
	}
	return a, nil
}

// fence powers node off; only a confirmed power-off lets the core take
// over early.
func (d *Daemon) fence(ctx context.Context, node string) {
	d.log.Warn("fencing", "node", node)
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := d.fen.Fence(c, node)
	cancel()
	if err != nil {
		d.log.Error("fencing failed: waiting for the lease to expire instead", "node", node, "err", err)
	} else {
		d.log.Warn("fenced: power off confirmed", "node", node)
	}
	d.send(ctx, core.Fenced{Node: node, OK: err == nil})
}

func (d *Daemon) watchdog(op string) {
	if d.wd == nil {
		return
	}
	var err error
	switch op {
	case "arm":
		err = d.wd.Arm(d.cfg.CoreTiming().WatchdogTimeout)
	case "pet":
		err = d.wd.Pet()
	case "disarm":
		err = d.wd.Disarm()
	}
	if err != nil {
		d.log.Error("watchdog", "op", op, "err", err)
	}
}

func (d *Daemon) timeout() time.Duration { return d.cfg.CoreTiming().RenewInterval * 2 }

// acquire creates the owner key under a fresh lease if the key is absent
// or released; the txn's revision is the fencing token.
func (d *Daemon) acquire(ctx context.Context) {
	t := d.cfg.CoreTiming()
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, time.Second)
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
		go d.cli.Revoke(context.Background(), lg.ID)
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
		sent := time.Now()
		c, cancel := context.WithTimeout(ctx, t.RenewInterval)
		_, err := d.cli.KeepAliveOnce(c, id)
		cancel()
		if err == nil {
			d.send(ctx, core.Renewed{SentAt: sent})
		} else if ctx.Err() == nil {
			d.log.Warn("lease renewal failed", "err", err)
		}
	}
}

// tokenValid reports whether this node still holds the lease with token,
// checked locally and then in etcd (the owner key's revision).
func (d *Daemon) tokenValid(ctx context.Context, token int64) error {
	d.mu.Lock()
	held := d.lease.token
	d.mu.Unlock()
	if held == 0 || held != token {
		return fmt.Errorf("fencing token %d is not held (holding %d)", token, held)
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	r, err := d.cli.Txn(c).If(
		clientv3.Compare(clientv3.ModRevision(keyOwner), "=", token),
		clientv3.Compare(clientv3.Value(keyOwner), "=", d.cfg.Node)).Commit()
	if err != nil {
		return fmt.Errorf("check fencing token %d: %w", token, err)
	}
	if !r.Succeeded {
		return fmt.Errorf("fencing token %d is stale", token)
	}
	return nil
}

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
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
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
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			d.cli.Revoke(c, l.id)
		}()
	}
}

func (d *Daemon) revokeOwner(ctx context.Context, node string, token int64) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(keyOwner), "=", token)).Then(clientv3.OpDelete(keyOwner)).Commit()
	if err != nil {
		d.log.Error("revoke fenced owner", "node", node, "err", err)
	}
}

func (d *Daemon) incFail(ctx context.Context, res string) {
	k := prefixFail + d.cfg.Node + "/" + res
	for i := 0; i < 10 && ctx.Err() == nil; i++ {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := d.cli.Get(c, k)
		if err == nil {
			n, rev := 0, int64(0)
			if len(r.Kvs) > 0 {
				n, _ = strconv.Atoi(string(r.Kvs[0].Value))
				rev = r.Kvs[0].ModRevision
			}
			var tr *clientv3.TxnResponse
			tr, err = d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, strconv.Itoa(n+1))).Commit()
			if err == nil && tr.Succeeded {
				cancel()
				d.log.Warn("fail count raised", "resource", res, "count", n+1)
				return
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	d.log.Error("could not raise fail count", "resource", res)
}

func (d *Daemon) clearMove(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d.cli.Txn(c).If(clientv3.Compare(clientv3.Value(keyMove), "=", d.cfg.Node)).Then(clientv3.OpDelete(keyMove)).Commit()
}

// execLoop runs resource operations and monitors one at a time.
func (d *Daemon) execLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.jobs:
			d.run(ctx, j)
		}
	}
}

func (d *Daemon) run(ctx context.Context, j job) {
	r := d.res[j.res]
	if j.monitor {
		c, cancel := context.WithTimeout(ctx, r.timeout("monitor"))
		err := r.r.Monitor(c)
		cancel()
		if err != nil && ctx.Err() == nil {
			d.log.Warn("monitor failed", "resource", j.res, "err", err)
			d.send(ctx, core.MonitorFailed{Resource: j.res, Err: err.Error()})
		}
		if j.token != 0 {
			select {
			case d.monDone <- struct{}{}:
			case <-ctx.Done():
			}
		}
		return
	}
	var err error
	switch j.op {
	case core.OpStart:
		if err = d.tokenValid(ctx, j.token); err == nil {
			c, cancel := context.WithTimeout(ctx, r.timeout("start"))
			err = r.r.Start(c)
			cancel()
		}
	case core.OpStop:
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout("stop"))
		err = r.r.Stop(c)
		cancel()
	}
	ev := core.Done{Op: j.op, Resource: j.res}
	if err != nil {
		ev.Err = err.Error()
		d.log.Error("resource action failed", "op", j.op, "resource", j.res, "err", err)
	} else {
		d.log.Info("resource action done", "op", j.op, "resource", j.res)
	}
	d.send(ctx, ev)
	if j.op == core.OpStart {
		d.nextMonitor[j.res] = time.Now().Add(d.res[j.res].cfg.MonitorInterval)
	}
}

// scheduleMonitors queues due monitors while the group runs here.
func (d *Daemon) scheduleMonitors(ctx context.Context) {
	if !d.core.Monitoring() || d.monPending || len(d.jobs) > 0 {
		return
	}
	now := time.Now()
	var due []string
	for _, n := range d.order {
		if now.After(d.nextMonitor[n]) {
			due = append(due, n)
			d.nextMonitor[n] = now.Add(d.res[n].cfg.MonitorInterval)
		}
	}
	for i, n := range due {
		j := job{res: n, monitor: true}
		if i == len(due)-1 {
			j.token = d.core.Token()
			d.monPending = true
		}
		d.jobs <- j
	}
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

// leaderLoop hands etcd's leadership to the arbitrator whenever this data
// node holds it. A data node that dies while leading costs an election
// and a lease extension (about 2-3s more failover); the arbitrator never
// runs the group, so losing the owner then only costs the lease TTL.
func (d *Daemon) leaderLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.etcd.Server.Leader() != d.etcd.Server.MemberID() {
			continue
		}
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		if id, ok := d.arbitratorID(c); ok {
			if _, err := d.cli.MoveLeader(c, id); err != nil {
				d.log.Debug("move etcd leadership to the arbitrator", "err", err)
			} else {
				d.log.Info("moved etcd leadership to the arbitrator")
			}
		}
		cancel()
	}
}

func (d *Daemon) arbitratorID(ctx context.Context) (uint64, bool) {
	d.mu.Lock()
	v := d.view
	d.mu.Unlock()
	arb := ""
	for _, m := range v.members {
		if m.Role == string(core.RoleArbitrator) && v.state.Online[m.Name] {
			arb = m.Name
		}
	}
	if arb == "" {
		return 0, false
	}
	ml, err := d.cli.MemberList(ctx)
	if err != nil {
		return 0, false
	}
	for _, m := range ml.Members {
		if m.Name == arb && !m.IsLearner {
			return m.ID, true
		}
	}
	return 0, false
}

// bootstrap registers this member and moves the CA key and the first
// pairing codes into etcd, retrying until it has quorum.
func (d *Daemon) bootstrap(ctx context.Context) {
	for ctx.Err() == nil {
		if err := d.bootstrapOnce(ctx); err == nil {
			d.booted.Store(true)
			return
		} else {
			d.log.Debug("bootstrap: retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (d *Daemon) bootstrapOnce(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	mj, _ := json.Marshal(MemberOf(d.cfg))
	ops := []clientv3.Op{clientv3.OpPut(prefixNodes+d.cfg.Node, string(mj))}
	if k, err := d.st.Read("ca.key"); err == nil {
		ops = append(ops, clientv3.OpPut(keyCAKey, string(k)))
	}
	var codes []storedCode
	if b, err := d.st.Read("pairing-codes"); err == nil {
		json.Unmarshal(b, &codes)
	}
	for _, sc := range codes {
		b, _ := json.Marshal(sc)
		ops = append(ops, clientv3.OpPut(prefixPairing+sc.Secret[:4], string(b)))
	}
	if _, err := d.cli.Txn(c).Then(ops...).Commit(); err != nil {
		return err
	}
	if len(codes) > 0 {
		if err := d.st.Write("pairing-codes", []byte("[]")); err != nil {
			return err
		}
	}
	return nil
}

// shutdown stops the group if it runs here and releases the lease.
func (d *Daemon) shutdown() {
	st := d.core.Status()
	if st.Held || st.Phase == core.PhaseStarting || st.Phase == core.PhaseRunning || st.Phase == core.PhaseStopping {
		for i := len(d.order) - 1; i >= 0; i-- {
			r := d.res[d.order[i]]
			c, cancel := context.WithTimeout(context.Background(), r.timeout("stop"))
			if err := r.r.Stop(c); err != nil {
				d.log.Error("shutdown: stop", "resource", d.order[i], "err", err)
			}
			cancel()
		}
	}
	if l, ok := d.takeLease(0); ok {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(keyOwner), "=", l.token)).Then(clientv3.OpPut(keyOwner, "")).Commit()
		d.cli.Revoke(c, l.id)
		cancel()
	}
	if d.wd != nil {
		d.wd.Disarm()
	}
	d.log.Info("stopped")
}
