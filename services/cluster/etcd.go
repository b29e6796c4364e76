package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"

	"tandem/services/cluster/core"
)

// The keys of the cluster state in etcd.
const (
	keyOwner       = "/tandem/group/owner"
	keyMove        = "/tandem/move"
	keyMaintenance = "/tandem/maintenance"
	prefixStandby  = "/tandem/standby/"
	prefixFail     = "/tandem/fail/" // + NODE/RESOURCE: failKey
	prefixNodes    = "/tandem/nodes/"
	prefixAlive    = "/tandem/alive/"
	prefixPairing  = "/tandem/pairing/"
	prefixRState   = "/tandem/rstate/"
	prefixCerts    = "/tandem/certs/"   // + serial: issued
	prefixRevoked  = "/tandem/revoked/" // + serial: when
	keyCRL         = "/tandem/crl"      // the signed revocation list
	// keyOldCAKey is where earlier versions kept the CA key; a member
	// with the key deletes it at start (bootstrapOnce).
	keyOldCAKey = "/tandem/ca/key"
)

// failKey is the key of node's fail count of resource res.
func failKey(node, res string) string { return prefixFail + node + "/" + res }

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// etcd preallocates each WAL segment (64 MB by default, as much as a
// node's whole perm partition once was); tandem's store is a few
// kilobytes of keys, so 16 MB segments leave room for the kept ones.
func init() { wal.SegmentSizeBytes = 16 << 20 }

// raftTiming gives etcd's heartbeat and election timeout for the group's
// timing. When the leader dies (the arbitrator, see leaderLoop) the owner
// can renew nothing until the others elect a new one, which takes up to
// two election timeouts plus a pre-vote and a vote round trip; the owner
// must have its renewal answered within ttl - stop_margin of the last one
// it sent, which was up to renew_interval before the death. The election
// timeout is a third of that budget, so an election takes at most two
// thirds of it and leaves a third for the round trips: with etcd's fixed
// default of 1s, the arbitrator's death made the owner stop the group
// about one time in four at the default 3s lease. Ten heartbeats per
// election as etcd advises; etcd's minimum lease TTL (1.5 election
// timeouts) stays under half the lease.
func raftTiming(t core.Timing) (tickMs, electionMs uint) {
	election := (t.LeaseTTL - t.StopMargin - t.RenewInterval) / 3
	tick := max(minRaftTick, election/10)
	return uint(tick.Milliseconds()), uint(10 * tick.Milliseconds())
}

// minRaftTick keeps heartbeats sane for a timing whose budget is tiny (the
// core's rules allow it; an election then may not fit, which is what such
// a timing chooses).
const minRaftTick = 20 * time.Millisecond

// startEtcd starts the embedded etcd member; it does not wait for quorum.
func startEtcd(cfg *Config, st State, cf *ClusterFile) (*embed.Etcd, error) {
	self := MemberOf(cfg)
	ec := embed.NewConfig()
	ec.Name = cfg.Node
	ec.Dir = st.Path("etcd")
	ec.ListenPeerUrls = []url.URL{mustURL(self.PeerURL())}
	ec.AdvertisePeerUrls = ec.ListenPeerUrls
	ec.ListenClientUrls = []url.URL{mustURL(self.ClientURL()), mustURL("https://" + hostPort("127.0.0.1", cfg.ClientPort))}
	ec.AdvertiseClientUrls = []url.URL{mustURL(self.ClientURL())}
	ec.InitialCluster = cf.InitialCluster()
	ec.ClusterState = cf.Bootstrap
	ec.InitialClusterToken = cf.Cluster
	ec.TickMs, ec.ElectionMs = raftTiming(cfg.CoreTiming())
	// A mail user import is one transaction, all or nothing
	// (maxMailImport users and a few keys more; etcd's default is 128).
	ec.MaxTxnOps = maxMailImport + 16
	ti := transport.TLSInfo{
		CertFile: st.Path("node.crt"), KeyFile: st.Path("node.key"), TrustedCAFile: st.Path("ca.crt"),
		ClientCertAuth: true,
		// Peers are authenticated by the cluster CA and their names:
		// only the planned members' certificates get in, on both ports
		// (no administrator's or monitor's certificate is ever issued
		// for one of those names). Their source address need not match
		// the certificate (multi-homed nodes).
		AllowedCNs:          cfg.nodeNames(),
		SkipClientSANVerify: true,
	}
	if _, err := os.Stat(st.Path("crl.der")); err == nil {
		// etcd reads it at every connection it accepts.
		ti.CRLFile = st.Path("crl.der")
	}
	ec.PeerTLSInfo, ec.ClientTLSInfo = ti, ti
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	zc.DisableStacktrace = true
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	zl, err := zc.Build(zap.Fields(zap.String("component", "etcd")))
	if err != nil {
		return nil, fmt.Errorf("etcd logger: %w", err)
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	ec.LogLevel = "error"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", cfg.Node, err)
	}
	return e, nil
}

func newClient(endpoints []string, st State) (*clientv3.Client, error) {
	_, tlsc, err := st.TLS()
	if err != nil {
		return nil, err
	}
	// gRPC closes a connection whose keepalive ping goes unanswered for
	// DialKeepAliveTimeout, failing every request on it; a loaded member
	// can take seconds to answer one, and a new connection costs a TLS
	// handshake, so the pings are rare and patient.
	c, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tlsc, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 10 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %v: %w", endpoints, err)
	}
	return c, nil
}

// promote turns this member from learner into voter once it has caught
// up; the leader refuses until then, so it retries, every second, each
// attempt given wait. It first asks whether this member is still a
// learner: etcd proposes a promotion of a voter to raft, which every
// member then rejects ("can only promote a learner member"), and a
// founder or a node whose earlier promotion timed out on the client side
// is one.
func promote(ctx context.Context, e *embed.Etcd, cf *ClusterFile, self string, st State, wait time.Duration, log *slog.Logger) {
	var eps []string
	for _, m := range cf.Members {
		if m.Name != self {
			eps = append(eps, m.ClientURL())
		}
	}
	if len(eps) == 0 {
		return
	}
	cli, err := newClient(eps, st)
	if err != nil {
		log.Error("promote: no client", "err", err)
		return
	}
	defer cli.Close()
	id := uint64(e.Server.MemberID())
	for last := time.Now(); ctx.Err() == nil; {
		err := promoteOnce(ctx, cli, id, wait)
		if err == nil {
			log.Info("promoted from learner to voting member")
			return
		}
		if errors.Is(err, rpctypes.ErrMemberNotLearner) {
			log.Debug("promote: a voting member already")
			return
		}
		if time.Since(last) > 30*time.Second {
			log.Info("promote: not yet", "err", err)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// promoteOnce promotes member id if it is a learner; ErrMemberNotLearner
// if it is a voter already.
func promoteOnce(ctx context.Context, cli *clientv3.Client, id uint64, wait time.Duration) error {
	c, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ml, err := cli.MemberList(c)
	if err != nil {
		return err
	}
	for _, m := range ml.Members {
		if m.ID == id && !m.IsLearner {
			return rpctypes.ErrMemberNotLearner
		}
	}
	_, err = cli.MemberPromote(c, id)
	return err
}
