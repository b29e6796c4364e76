package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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

// DaemonNice is the nice value tandem-cluster gives itself at start. The
// daemon holds the node's etcd member and renews the group's lease, so on
// a loaded node it must get the CPU before the mail workload (nice 5,
// mail.WorkloadNice) and before the kernel's DRBD and network threads
// (nice 0): in the lab, an owner resyncing its peer after a crash while
// starting mail answered no renewal for over four seconds and was reset
// by its watchdog. Corosync runs at real-time priority for the same
// reason; a raised nice value instead of real time, because the daemon's
// Go runtime and etcd can be busy for seconds (garbage collection, a
// snapshot) and must then not starve the kernel's own threads.
const DaemonNice = -10

// Daemon is one node's cluster daemon.
type Daemon struct {
	// dnsView is Options.DNSView.
	dnsView string
	cfg     *Config
	st      State
	log     *slog.Logger
	cf      *ClusterFile

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
	started   time.Time
	learners  map[string]bool // etcd members not yet voting, by name (memberLoop)
	lease     leaseState
	view      view        // last poll, for status
	coreView  core.Status // the core's status after the last step
	statusRaw []byte

	nextMonitor map[string]time.Time
	monPending  bool
	monDone     chan struct{}
	rstatePut   string // resource states last published
	rstateAt    time.Time
	booted      atomic.Bool // bootstrap moved the codes into etcd
	pairLimit   *sourceLimiter
	revoked     atomic.Pointer[map[string]bool] // serials, from crl.der
	// resetPending: the core announced a reset (ResetComing) and the
	// watchdog has not been petted or disarmed since; main loop only.
	resetPending bool
}

// Options are the daemon's inputs besides its config.
type Options struct {
	Config *Config
	State  State
	Log    *slog.Logger
	// DNSView, if set, is the file the daemon keeps the cluster view
	// in for tandem-dns (its -cluster file).
	DNSView string
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
		cfg: o.Config, st: o.State, log: o.Log.With("component", "cluster"), cf: cf, wd: wd, dnsView: o.DNSView,
		core:   core.New(o.Config.CoreConfig()),
		events: make(chan core.Event, 256), jobs: make(chan job, 64), monDone: make(chan struct{}, 1),
		res: map[string]*resource{}, nextMonitor: map[string]time.Time{},
		pairLimit: newSourceLimiter(maxSourceFailures, sourceWindow),
	}
	if d.fen, err = fencers(o.Config); err != nil {
		return nil, err
	}
	for _, rc := range o.Config.Group {
		r, err := newResource(ctx, d, rc)
		if err != nil {
			return nil, err
		}
		d.res[rc.Name] = r
		d.order = append(d.order, rc.Name)
	}
	return d, nil
}

// Run runs the daemon until ctx ends, then stops the group (if it runs
// here), releases the lease and stops etcd. ready is called once the API
// serves (the main sends sd_notify READY=1 from it).
func (d *Daemon) Run(ctx context.Context, ready func()) error {
	d.started = time.Now()
	d.coreView = d.core.Status()
	d.writeStatusFile() // replace what a previous process left
	d.reportLastReset()
	if err := d.loadCRL(); err != nil {
		return err
	}
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
	go promote(ctx, e, d.cf, d.cfg.Node, d.st, d.cfg.requestTimeout(), d.log)
	go d.memberLoop(ctx)
	go d.bootstrap(ctx)
	go d.aliveLoop(ctx)
	go d.pollLoop(ctx)
	go d.execLoop(ctx)
	if d.cfg.Role == core.RoleData {
		go d.leaderLoop(ctx)
		go d.fenceCheckLoop(ctx)
		if d.cfg.TimeStatus != "" {
			go d.clockLoop(ctx)
		}
	}
	if a := d.drbd(); a != nil {
		go a.prepare(ctx)
		defer a.close()
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
	tick := time.NewTicker(stepEvery(d.cfg.CoreTiming().LeaseTTL))
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

// stepEvery is how often the core steps with no event: ttl/32 between
// 100ms and 250ms (250ms for the lab's 8s lease). Each step writes
// status.json if it changed and may pet the watchdog; under TCG every
// wake-up of a process costs, and the lab's three idle nodes used 1.54
// of the two cores with a step every 100ms and DRBD's status read every
// second, 1.21 with these (one 60 s sample each).
func stepEvery(ttl time.Duration) time.Duration {
	return max(100*time.Millisecond, min(250*time.Millisecond, ttl/32))
}

func (d *Daemon) step(ctx context.Context, ev core.Event) {
	acts := d.core.Step(time.Now(), ev)
	if e, ok := ev.(core.Done); ok && e.Op == core.OpStart && e.Err == "" {
		d.nextMonitor[e.Resource] = time.Now().Add(d.res[e.Resource].cfg.MonitorInterval)
	}
	for _, a := range acts {
		d.log.Debug("action", "action", a.String())
		d.do(ctx, a)
	}
	d.mu.Lock()
	d.coreView = d.core.Status()
	d.mu.Unlock()
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
		go d.incFail(ctx, a.Resource, a.AtLeast)
	case core.ClearMove:
		go d.clearMove(ctx)
	case core.Watchdog:
		d.watchdog(a.Op)
	case core.Fence:
		go d.fence(ctx, a.Node)
	case core.ResetComing:
		d.resetComing(a)
	}
}

func fencers(c *Config) (fence.Agents, error) {
	a := fence.Agents{}
	for node, f := range c.Fencing {
		pw, err := readSecret(f.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.password_file: %w", ErrConfig, f.field(node), err)
		}
		a[node] = &fence.IPMI{Host: f.Address, Port: f.Port, User: f.User, Password: pw, CipherSuite: f.CipherSuite}
	}
	return a, nil
}

// readSecret reads the first line of a file that only its owner may read
// (a BMC's password): a file others can read is refused, not used.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: mode %04o: a password file must be 0600 or stricter", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	if pw = strings.TrimRight(pw, "\r"); pw == "" {
		return "", fmt.Errorf("%s: its first line is empty: no password", path)
	}
	return pw, nil
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
	if op != "arm" {
		d.resetAverted(op)
	}
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

// bootstrap registers this member and its certificate, moves the first
// pairing codes and the revocation list into etcd and takes the CA key
// out of it (where earlier versions kept it), retrying until it has
// quorum.
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
	c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
	defer cancel()
	if _, err := d.st.Read("ca.key"); err != nil {
		if g, gerr := d.cli.Get(c, keyOldCAKey); gerr == nil && len(g.Kvs) > 0 {
			if err := d.st.Write("ca.key", g.Kvs[0].Value); err != nil {
				return err
			}
		}
	}
	crt, err := d.st.Read("node.crt")
	if err != nil {
		return err
	}
	if err := d.register(c, crt); err != nil {
		return err
	}
	mj, _ := json.Marshal(MemberOf(d.cfg))
	ops := []clientv3.Op{clientv3.OpPut(prefixNodes+d.cfg.Node, string(mj))}
	if _, err := d.st.Read("ca.key"); err == nil {
		ops = append(ops, clientv3.OpDelete(keyOldCAKey))
	}
	var codes []storedCode
	if b, err := d.st.Read("pairing-codes"); err == nil {
		if err := json.Unmarshal(b, &codes); err != nil {
			return fmt.Errorf("pairing codes in perm: %w", err)
		}
	}
	for _, sc := range codes {
		b, _ := json.Marshal(sc)
		ops = append(ops, clientv3.OpPut(prefixPairing+sc.Secret[:4], string(b)))
	}
	if crl, err := d.st.Read("crl.der"); err == nil {
		// The first list only: later ones come from revoke.
		if _, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(keyCRL), "=", 0)).Then(clientv3.OpPut(keyCRL, string(crl))).Commit(); err != nil {
			return err
		}
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
		if _, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(keyOwner), "=", l.token)).Then(clientv3.OpPut(keyOwner, "")).Commit(); err != nil {
			d.log.Warn("stop: release the group (the peer takes it when the lease expires)", "err", err)
		}
		if _, err := d.cli.Revoke(c, l.id); err != nil {
			d.log.Warn("stop: revoke the lease (it expires on its own)", "err", err)
		}
		cancel()
	}
	if d.wd != nil {
		if err := d.wd.Disarm(); err != nil {
			d.log.Error("stop: disarm the watchdog (it will reset this node)", "err", err)
		}
	}
	d.log.Info("stopped")
}
