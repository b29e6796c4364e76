package core

import (
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestSplitBrain runs testdata/splitbrain.txt: each "resolve" names a node,
// the node whose data is kept and the node's DRBD state; its output is the
// step the node takes (go test -rewrite rewrites the outputs).
func TestSplitBrain(t *testing.T) {
	datadriven.RunTest(t, "testdata/splitbrain.txt", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "resolve" {
			d.Fatalf(t, "unknown command %q (want resolve)", d.Cmd)
		}
		var node, keep, conn, role string
		d.ScanArgs(t, "node", &node)
		d.ScanArgs(t, "keep", &keep)
		d.ScanArgs(t, "connection", &conn)
		d.ScanArgs(t, "role", &role)
		return string(ResolveSplitBrain(node, keep, conn, role)) + "\n"
	})
}
