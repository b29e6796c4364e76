package replication

import (
	"context"
	"fmt"
)

// Cluster is what the fence-peer and after-resync-target handlers need
// from the cluster daemon (services/cluster implements it; it is not in
// this package). Both calls must go through the cluster's consistent
// store (etcd) and so succeed only with quorum: a node cut off from the
// cluster gets an error, and its I/O stays frozen.
type Cluster interface {
	// OutdatePeer makes sure node peer cannot promote resource from its
	// current data: it records, in the cluster's store, that peer's copy
	// is outdated (a promotion on peer checks that record), unless peer is
	// already known fenced by STONITH or known primary. It says which.
	// It is called on the surviving primary when it loses the peer while
	// writing; an error means the cluster could not decide (no quorum,
	// timeout).
	OutdatePeer(ctx context.Context, resource, peer string) (PeerFence, error)
	// ClearOutdated removes node's outdated record once node has resynced
	// and is UpToDate again. It is called on the sync target.
	ClearOutdated(ctx context.Context, resource, node string) error
}

// PeerFence is the outcome of fencing the peer, numbered as
// crm-fence-peer.sh's exit codes, which DRBD 8.4 reads from the
// fence-peer handler.
type PeerFence int

const (
	// PeerInconsistent: the peer's disk is Inconsistent (it cannot
	// promote anyway); DRBD marks it so and resumes I/O.
	PeerInconsistent PeerFence = 3
	// PeerOutdated: the peer's copy is marked outdated in the cluster
	// (fenced by constraint); DRBD resumes I/O.
	PeerOutdated PeerFence = 4
	// PeerUnreachable: the peer is down or unreachable and the cluster
	// guarantees it cannot promote (it lacks quorum and its lease);
	// DRBD treats it as outdated if the local disk is UpToDate.
	PeerUnreachable PeerFence = 5
	// PeerPrimary: the peer is (or is becoming) primary: this node must
	// refuse; DRBD outdates the local disk.
	PeerPrimary PeerFence = 6
	// PeerStonithed: the peer was fenced by STONITH (power or watchdog
	// reset confirmed); DRBD resumes I/O.
	PeerStonithed PeerFence = 7
)

func (f PeerFence) String() string {
	switch f {
	case PeerInconsistent:
		return "peer inconsistent"
	case PeerOutdated:
		return "peer outdated"
	case PeerUnreachable:
		return "peer unreachable"
	case PeerPrimary:
		return "peer primary"
	case PeerStonithed:
		return "peer stonithed"
	}
	return fmt.Sprintf("PeerFence(%d)", int(f))
}

// ExitFailed is the handler's exit code when it could not fence the peer
// (no quorum, cluster error, bad environment). DRBD 8.4 treats any code
// other than 3 to 7 as failure and, with fencing resource-and-stonith,
// keeps the resource's I/O frozen: nothing is acknowledged that the peer
// might not have, which is the safe answer without quorum.
const ExitFailed = 1

// FencePeer is the fence-peer handler: DRBD runs
// "<HandlerCommand> fence-peer" with DRBD_RESOURCE in the environment
// when it loses the peer while fencing is on; the returned int is the
// command's exit code. env reads the environment (os.Getenv), self is
// this node's host name.
func FencePeer(ctx context.Context, c *Config, self string, cl Cluster, env func(string) string, logf func(string, ...any)) int {
	res := env("DRBD_RESOURCE")
	if res != c.Resource {
		logf("replication: fence-peer: DRBD_RESOURCE=%q, want %q", res, c.Resource)
		return ExitFailed
	}
	peer, ok := c.Peer(self)
	if !ok {
		logf("replication: fence-peer %s: host %q is not a node of the resource", res, self)
		return ExitFailed
	}
	f, err := cl.OutdatePeer(ctx, res, peer.Name)
	if err != nil {
		logf("replication: fence-peer %s: outdate %s: %v; I/O stays frozen", res, peer.Name, err)
		return ExitFailed
	}
	if f < PeerInconsistent || f > PeerStonithed {
		logf("replication: fence-peer %s: cluster answered %v for %s; I/O stays frozen", res, f, peer.Name)
		return ExitFailed
	}
	logf("replication: fence-peer %s: %s: %v", res, peer.Name, f)
	return int(f)
}

// AfterResyncTarget is the after-resync-target handler: DRBD runs it on
// the node that just became UpToDate by resync; it clears that node's
// outdated record. Exit code 0 on success; a failure only leaves the
// record (the next fence-peer call finds the node outdated, the safe
// side), so DRBD ignores it.
func AfterResyncTarget(ctx context.Context, c *Config, self string, cl Cluster, env func(string) string, logf func(string, ...any)) int {
	res := env("DRBD_RESOURCE")
	if res != c.Resource {
		logf("replication: after-resync-target: DRBD_RESOURCE=%q, want %q", res, c.Resource)
		return ExitFailed
	}
	if err := cl.ClearOutdated(ctx, res, self); err != nil {
		logf("replication: after-resync-target %s: clear %s: %v", res, self, err)
		return ExitFailed
	}
	logf("replication: after-resync-target %s: %s is UpToDate again", res, self)
	return 0
}
