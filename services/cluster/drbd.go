package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/cluster/core"
	"tandem/services/replication"
)

// The replicated volume in the cluster's store (etcd), per DRBD resource:
//
//	/tandem/replication/RES/seeded         node that started the first data generation
//	/tandem/replication/RES/outdated/NODE  NODE's copy may not be promoted (fence-peer)
//	/tandem/replication/RES/status/NODE    NODE's last replication.Status (JSON)
//	/tandem/replication/RES/resolve        a pending split-brain resolve (JSON)
const prefixReplication = "/tandem/replication/"

func replKey(res string, parts ...string) string {
	return prefixReplication + res + "/" + strings.Join(parts, "/")
}

// HandlerCommand is what DRBD runs as its fence-peer and after-resync-target
// handler: tandem-cluster itself, with the handler's name as argument.
const HandlerCommand = "/bin/tandem-cluster"

// drbdAgent is the group's first resource: "start" promotes this node's
// side of the replicated volume, "stop" demotes it. The resource itself is
// brought up (attached, connecting, Secondary) when the daemon starts, on
// both data nodes, whoever owns the group: see prepare.
type drbdAgent struct {
	d    *Daemon
	name string // the group resource's name
	r    *replication.Resource
	up   chan struct{} // closed once the resource is up
}

var devRE = regexp.MustCompile(`^/dev/drbd([0-9]+)$`)

// newDRBD builds the agent from its params: resource, device
// (/dev/drbdN), disk (the backing data partition) and nodes
// ("NAME=ADDR:PORT,NAME=ADDR:PORT", the two data nodes).
func newDRBD(d *Daemon, name string, p map[string]string) (*drbdAgent, error) {
	m := devRE.FindStringSubmatch(p["device"])
	if m == nil {
		return nil, fmt.Errorf("params.device %q: want /dev/drbdN", p["device"])
	}
	minor, _ := strconv.Atoi(m[1])
	cfg := replication.Config{Resource: p["resource"], Minor: minor, HandlerCommand: HandlerCommand}
	nodes := strings.Split(p["nodes"], ",")
	if len(nodes) != 2 {
		return nil, fmt.Errorf("params.nodes %q: want NAME=ADDR:PORT,NAME=ADDR:PORT", p["nodes"])
	}
	for i, n := range nodes {
		name, addr, _ := strings.Cut(n, "=")
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("params.nodes %q: %w", n, err)
		}
		// Each side's disk is its own data partition; DRBD reads only
		// the local node's "disk", so the peer's entry repeats ours.
		cfg.Nodes[i] = replication.Node{Name: name, Address: ap, Disk: p["disk"]}
	}
	// The shared secret comes with the CA key, which a node that joined
	// gets from the others after it started (prepare sets it).
	check := cfg
	check.SharedSecret = strings.Repeat("0", 32)
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	if _, ok := cfg.Local(d.cfg.Node); !ok {
		return nil, fmt.Errorf("params.nodes: this node %q is not one of them", d.cfg.Node)
	}
	return &drbdAgent{d: d, name: name, up: make(chan struct{}), r: &replication.Resource{
		Config: cfg, ConfigPath: "/etc/drbd.d/" + cfg.Resource + ".res", Self: d.cfg.Node,
		Cmd: replication.Exec{}, Logf: func(f string, a ...any) { d.log.Info(fmt.Sprintf(f, a...)) },
	}}, nil
}

func (a *drbdAgent) res() string { return a.r.Config.Resource }

// drbdSecret is the replication link's shared secret: an HMAC of the
// cluster's name under the CA key, so both data nodes have it as soon
// as they have the CA key, and nothing else needs sending or storing.
// It reaches DRBD only in the 0600 resource file.
func (d *Daemon) drbdSecret() (string, error) {
	b, err := d.st.Read("ca.key")
	if err != nil {
		return "", fmt.Errorf("replication secret: waiting for the CA key from the other members: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", errors.New("replication secret: CA key: no PEM block")
	}
	m := hmac.New(sha256.New, blk.Bytes)
	m.Write([]byte("tandem drbd shared-secret " + d.cf.Cluster))
	return hex.EncodeToString(m.Sum(nil))[:32], nil
}

// prepare brings the resource up, retrying until it works, then keeps its
// status published in etcd and carries out split-brain resolves.
func (a *drbdAgent) prepare(ctx context.Context) {
	for {
		// DRBD picks its "on" section by the kernel's host name, which
		// the network service sets from the node config.
		created, err := false, error(nil)
		if h, _ := os.Hostname(); h != a.d.cfg.Node {
			err = fmt.Errorf("host name is %q, want %q", h, a.d.cfg.Node)
		} else if a.r.Config.SharedSecret, err = a.d.drbdSecret(); err == nil {
			created, err = a.r.Start(ctx)
		}
		if err == nil {
			a.d.log.Info("replication: up", "resource", a.res(), "created_metadata", created)
			close(a.up)
			break
		}
		a.d.log.Error("replication: bring up", "resource", a.res(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
	var published []byte
	// Every 3s: a status is drbdsetup run twice (drbd-utils 9 hands 8.4's
	// events2 to drbdsetup-84), and under TCG reading it every second
	// cost each data node about 15% of a core.
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := a.r.Status(ctx)
		if err != nil {
			a.d.log.Warn("replication: status", "err", err)
			continue
		}
		if b, _ := json.Marshal(st); string(b) != string(published) {
			c, cancel := context.WithTimeout(ctx, a.d.cfg.requestTimeout())
			if _, err := a.d.cli.Put(c, replKey(a.res(), "status", a.d.cfg.Node), string(b)); err == nil {
				published = b
			}
			cancel()
		}
		a.resolve(ctx, st)
	}
}

// close takes the resource down when the daemon stops (the node is shutting
// down), so the peer sees a clean disconnect rather than a timeout.
func (a *drbdAgent) close() {
	select {
	case <-a.up:
	default:
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.r.Down(c); err != nil {
		a.d.log.Error("replication: down", "err", err)
	}
}

func (a *drbdAgent) Start(ctx context.Context) error {
	select {
	case <-a.up:
	case <-ctx.Done():
		return fmt.Errorf("replication %s is not up yet: %w", a.res(), ctx.Err())
	}
	for {
		done, err := a.tryPromote(ctx)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			st, _ := a.r.Status(context.Background())
			return fmt.Errorf("promote %s: gave up (disk %s, connection %s, peer %s/%s): %w", a.res(), st.Disk, st.Connection, st.PeerRole, st.PeerDisk, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// tryPromote makes one attempt; false without error means "not yet, try
// again" (a peer still Primary, a resync still running).
func (a *drbdAgent) tryPromote(ctx context.Context) (bool, error) {
	st, err := a.r.Status(ctx)
	if err != nil {
		return false, err
	}
	if st.Role == "Primary" {
		return true, nil
	}
	out, err := a.d.cli.Get(ctx, replKey(a.res(), "outdated", a.d.cfg.Node))
	if err != nil {
		return false, nil // no quorum: the core stops us anyway
	}
	if len(out.Kvs) > 0 {
		if !st.Connected() {
			return false, fmt.Errorf("promote %s: this node's copy was outdated by the peer and has not resynced", a.res())
		}
		// Resynced, but after-resync-target could not clear the record.
		if err := a.d.ClearOutdated(ctx, a.res(), a.d.cfg.Node); err != nil {
			return false, nil
		}
	}
	if st.Disk == "Inconsistent" {
		if st.Connection == "Connected" && st.Replication == "Established" && st.PeerDisk == "Inconsistent" && st.PeerRole == "Secondary" {
			return false, a.seed(ctx)
		}
		return false, nil // resyncing, or waiting for the peer
	}
	if err := a.r.Primary(ctx, false); err != nil {
		a.d.log.Info("replication: promote refused, retrying", "err", err)
		return false, nil
	}
	return true, nil
}

// seed starts the first data generation on a cluster's two new disks, once
// (the etcd key makes sure only one node, once, ever does it).
func (a *drbdAgent) seed(ctx context.Context) error {
	k := replKey(a.res(), "seeded")
	tr, err := a.d.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, a.d.cfg.Node)).Commit()
	if err != nil {
		return nil // retried
	}
	if !tr.Succeeded {
		return fmt.Errorf("replication %s: both disks Inconsistent but the cluster's data was created before: not starting over (run tandemctl replication status)", a.res())
	}
	if err := a.r.SeedNew(ctx); err != nil {
		// DRBD refuses unless the connection is up at that instant (it
		// can drop under load). Nothing changed: give the record back
		// so that this or the other node tries again.
		a.d.log.Warn("replication: seeding failed, retrying", "err", err)
		if _, err := a.d.cli.Txn(context.WithoutCancel(ctx)).If(clientv3.Compare(clientv3.Value(k), "=", a.d.cfg.Node)).Then(clientv3.OpDelete(k)).Commit(); err != nil {
			a.d.log.Error("replication: give the seeding record back", "key", k, "err", err)
		}
	}
	return nil
}

func (a *drbdAgent) Stop(ctx context.Context) error {
	select {
	case <-a.up:
	default:
		return nil // never up: nothing promoted
	}
	for {
		st, err := a.r.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Up || st.Role != "Primary" {
			return nil
		}
		// Demotion fails while anything holds the device open, such as
		// a mount namespace of a workload still exiting.
		err = a.r.Secondary(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (a *drbdAgent) Monitor(ctx context.Context) error {
	st, err := a.r.Status(ctx)
	if err != nil {
		return err
	}
	switch {
	case !st.Up:
		return fmt.Errorf("replication %s is down", a.res())
	case st.Role != "Primary":
		return fmt.Errorf("%w: %s is %s", ErrNotRunning, a.res(), st.Role)
	}
	return nil
}

// OutdatePeer implements replication.Cluster for the fence-peer handler:
// with quorum, it records that peer's copy may not be promoted, unless
// peer owns the group (then this node must refuse).
func (d *Daemon) OutdatePeer(ctx context.Context, res, peer string) (replication.PeerFence, error) {
	k := replKey(res, "outdated", peer)
	tr, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(keyOwner), "=", peer)).
		Else(clientv3.OpPut(k, d.cfg.Node)).Commit()
	if err != nil {
		return 0, fmt.Errorf("outdate %s: %w", peer, err)
	}
	if tr.Succeeded {
		return replication.PeerPrimary, nil
	}
	d.log.Info("replication: peer outdated", "resource", res, "peer", peer)
	return replication.PeerOutdated, nil
}

// ClearOutdated implements replication.Cluster for after-resync-target.
// It also clears node's fail count of the drbd resource: a promotion
// refused because the copy was outdated is fatal on that node (the group
// must move on), but once the copy has resynced the reason is gone, and a
// node left barred could not take over when the owner later fails.
func (d *Daemon) ClearOutdated(ctx context.Context, res, node string) error {
	ops := []clientv3.Op{clientv3.OpDelete(replKey(res, "outdated", node))}
	if a := d.drbd(); a != nil {
		ops = append(ops, clientv3.OpDelete(failKey(node, a.name)))
	}
	if _, err := d.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("clear outdated %s: %w", node, err)
	}
	d.log.Info("replication: outdated record cleared", "resource", res, "node", node)
	return nil
}

// drbd returns the group's DRBD agent, if it has one.
func (d *Daemon) drbd() *drbdAgent {
	for _, r := range d.res {
		if a, ok := r.r.(*drbdAgent); ok {
			return a
		}
	}
	return nil
}

// Resolve is a pending split-brain resolve: Keep's data wins.
type Resolve struct {
	Keep string    `json:"keep"`
	At   time.Time `json:"at"`
}

// resolve carries out this node's half of a pending split-brain resolve:
// the victim drops its changes and reconnects, the keeper reconnects; once
// the nodes are connected again the request is removed.
func (a *drbdAgent) resolve(ctx context.Context, st replication.Status) {
	k := replKey(a.res(), "resolve")
	r, err := a.d.cli.Get(ctx, k)
	if err != nil || len(r.Kvs) == 0 {
		return
	}
	var rq Resolve
	if err := json.Unmarshal(r.Kvs[0].Value, &rq); err != nil {
		a.d.log.Error("replication: resolve: unreadable request in etcd", "key", k, "err", err)
		return
	}
	switch step := core.ResolveSplitBrain(a.d.cfg.Node, rq.Keep, st.Connection, st.Role); step {
	case core.SplitBrainDone:
		_, err := a.d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", r.Kvs[0].ModRevision)).Then(clientv3.OpDelete(k)).Commit()
		if err != nil {
			a.d.log.Warn("replication: resolve: remove the finished request (retried)", "err", err)
			return
		}
		a.d.log.Info("replication: split brain resolved", "kept", rq.Keep)
	case core.SplitBrainRefuse:
		a.d.log.Error("replication: resolve: this node is Primary and would lose its data; stop the group here first", "kept", rq.Keep)
	case core.SplitBrainKeep, core.SplitBrainDiscard:
		discard := step == core.SplitBrainDiscard
		a.d.log.Info("replication: resolving split brain", "kept", rq.Keep, "discard_mine", discard)
		if err := a.r.Connect(ctx, discard); err != nil {
			a.d.log.Error("replication: resolve", "err", err)
		}
	}
}

// ReplicationStatus is what tandemctl replication status shows.
type ReplicationStatus struct {
	Resource string                        `json:"resource"`
	Nodes    map[string]replication.Status `json:"nodes"`
	Seeded   string                        `json:"seeded,omitempty"`
	Outdated []string                      `json:"outdated,omitempty"`
	Resolve  *Resolve                      `json:"resolve,omitempty"`
}

func (d *Daemon) replicationStatus(ctx context.Context, res string) (*ReplicationStatus, error) {
	r, err := d.cli.Get(ctx, replKey(res, ""), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	rs := &ReplicationStatus{Resource: res, Nodes: map[string]replication.Status{}}
	for _, kv := range r.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), replKey(res, ""))
		kind, node, _ := strings.Cut(rest, "/")
		switch kind {
		case "status":
			var st replication.Status
			if json.Unmarshal(kv.Value, &st) == nil {
				rs.Nodes[node] = st
			}
		case "seeded":
			rs.Seeded = string(kv.Value)
		case "outdated":
			rs.Outdated = append(rs.Outdated, node)
		case "resolve":
			rs.Resolve = &Resolve{}
			if err := json.Unmarshal(kv.Value, rs.Resolve); err != nil {
				return rs, fmt.Errorf("%s: %w", kv.Key, err)
			}
		}
	}
	return rs, nil
}
