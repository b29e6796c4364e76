package core

// SplitBrainStep is what a data node does about a pending split-brain
// resolve (tandemctl replication resolve-split-brain -keep NODE).
type SplitBrainStep string

// The steps.
const (
	// SplitBrainDone: the nodes are connected again; the request is removed.
	SplitBrainDone SplitBrainStep = "done"
	// SplitBrainWait: DRBD is connecting; nothing to do yet.
	SplitBrainWait SplitBrainStep = "wait"
	// SplitBrainRefuse: this node would drop its data while it is Primary
	// (running the group); the admin must stop the group here first.
	SplitBrainRefuse SplitBrainStep = "refuse"
	// SplitBrainKeep: reconnect, keeping this node's data.
	SplitBrainKeep SplitBrainStep = "connect"
	// SplitBrainDiscard: reconnect, discarding this node's changes since the
	// split, so that DRBD resyncs it from the kept node.
	SplitBrainDiscard SplitBrainStep = "connect-discard-my-data"
)

// ResolveSplitBrain decides node's step in a resolve that keeps keep's data,
// from its DRBD connection state and role (as drbdsetup reports them).
func ResolveSplitBrain(node, keep, connection, role string) SplitBrainStep {
	switch {
	case connection == "Connected":
		return SplitBrainDone
	case connection != "StandAlone":
		return SplitBrainWait
	case node == keep:
		return SplitBrainKeep
	case role == "Primary":
		return SplitBrainRefuse
	}
	return SplitBrainDiscard
}
