package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/replication"
)

// The replication endpoints (data nodes with a drbd resource):
//
//	GET  /v1/replication                       ReplicationStatus  monitor admin node
//	POST /v1/replication/resolve {"node"}      resolve a split brain keeping node's data  admin
//	POST /v1/replication/handler {"handler","resource"}  DRBD's handlers, from this node only  node

// HandlerRequest is what tandem-cluster, run by DRBD as a handler, sends
// the daemon on its own node.
type HandlerRequest struct {
	Handler  string `json:"handler"`
	Resource string `json:"resource"`
}

func (d *Daemon) replicationRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/replication", d.auth(readers, d.handleReplication))
	mux.Handle("POST /v1/replication/resolve", d.auth(admins, d.handleResolve))
	mux.Handle("POST /v1/replication/handler", d.auth(nodes, d.handleHandler))
}

// replicationAgent answers 404 when this node has no replicated volume.
func (d *Daemon) replicationAgent(w http.ResponseWriter) *drbdAgent {
	a := d.drbd()
	if a == nil {
		writeJSON(w, http.StatusNotFound, apiError{"node " + d.cfg.Node + " has no replicated volume (ask a data node)"})
	}
	return a
}

// handleReplication answers on every member: the data nodes publish their
// status in etcd, so the arbitrator can tell it too (it finds the
// resource's name there).
func (d *Daemon) handleReplication(w http.ResponseWriter, r *http.Request) {
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	res := ""
	if a := d.drbd(); a != nil {
		res = a.res()
	} else if g, err := d.cli.Get(c, prefixReplication, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1)); err == nil && len(g.Kvs) > 0 {
		res, _, _ = strings.Cut(strings.TrimPrefix(string(g.Kvs[0].Key), prefixReplication), "/")
	}
	if res == "" {
		writeJSON(w, http.StatusNotFound, apiError{"no replicated volume is known to the cluster (yet)"})
		return
	}
	rs, err := d.replicationStatus(c, res)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"replication status: cluster state not readable (no quorum?): " + err.Error()})
		return
	}
	writeJSON(w, 200, rs)
}

// handleResolve records a split-brain resolve; each data node carries out
// its half (drbdAgent.resolve). The node whose data is dropped must not be
// running the group.
func (d *Daemon) handleResolve(w http.ResponseWriter, r *http.Request) {
	var req Request
	a := d.replicationAgent(w)
	if a == nil || !decode(w, r, &req) || !d.checkNode(w, r, req.Node, true) {
		return
	}
	b, _ := json.Marshal(Resolve{Keep: req.Node, At: time.Now().UTC()})
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	holder, refused, err := recordResolve(c, d.cli, replKey(a.res(), "resolve"), req.Node, b)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"resolve: cluster state not writable (no quorum?): " + err.Error()})
		return
	}
	if refused {
		writeJSON(w, http.StatusConflict, apiError{fmt.Sprintf("the group runs on %s: keep %s's data, or move the group to %s first", holder, holder, req.Node)})
		return
	}
	d.log.Info("api", "change", "resolve split brain keeping "+req.Node, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSON(w, 200, map[string]string{"ok": "resolve split brain keeping " + req.Node})
}

// recordResolve writes a split-brain resolve record at key if the group
// runs on keep or nowhere, in one transaction, so the group cannot be
// taken between the check and the write; refused, it returns who holds
// the group.
func recordResolve(ctx context.Context, cli *clientv3.Client, key, keep string, record []byte) (holder string, refused bool, err error) {
	put := []clientv3.Op{clientv3.OpPut(key, string(record))}
	owner := func(v string) []clientv3.Cmp {
		return []clientv3.Cmp{clientv3.Compare(clientv3.Value(keyOwner), "=", v)}
	}
	tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keyOwner), "=", 0)).Then(put...).
		Else(clientv3.OpTxn(owner(keep), put, []clientv3.Op{clientv3.OpTxn(owner(""), put, []clientv3.Op{clientv3.OpGet(keyOwner)})})).Commit()
	if err != nil || tr.Succeeded {
		return "", false, err
	}
	inner := tr.Responses[0].GetResponseTxn()
	if inner.Succeeded {
		return "", false, nil
	}
	last := inner.Responses[0].GetResponseTxn()
	if last.Succeeded {
		return "", false, nil
	}
	if kvs := last.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		holder = string(kvs[0].Value)
	}
	return holder, true, nil
}

// handleHandler runs DRBD's fence-peer or after-resync-target handler for
// the tandem-cluster process DRBD started on this node.
func (d *Daemon) handleHandler(w http.ResponseWriter, r *http.Request) {
	var req HandlerRequest
	if host, _, _ := net.SplitHostPort(r.RemoteAddr); !net.ParseIP(host).IsLoopback() {
		writeJSON(w, http.StatusForbidden, apiError{"DRBD handlers run on the node itself"})
		return
	}
	a := d.replicationAgent(w)
	if a == nil || !decode(w, r, &req) {
		return
	}
	env := func(k string) string {
		if k == "DRBD_RESOURCE" {
			return req.Resource
		}
		return ""
	}
	logf := func(f string, args ...any) { d.log.Info(fmt.Sprintf(f, args...)) }
	// Without quorum etcd never answers; DRBD keeps I/O frozen meanwhile,
	// so give up well before a human would.
	c, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var code int
	switch req.Handler {
	case "fence-peer":
		code = replication.FencePeer(c, &a.r.Config, d.cfg.Node, d, env, logf)
	case "after-resync-target":
		code = replication.AfterResyncTarget(c, &a.r.Config, d.cfg.Node, d, env, logf)
	default:
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("handler %q: want fence-peer or after-resync-target", req.Handler)})
		return
	}
	writeJSON(w, 200, map[string]int{"code": code})
}

// Replication reads the replicated volume's status.
func (c *Client) Replication(ctx context.Context) (*ReplicationStatus, error) {
	var rs ReplicationStatus
	return &rs, c.do(ctx, "GET", "/v1/replication", nil, &rs)
}

// RunHandler asks the local daemon to run a DRBD handler and returns the
// exit code DRBD should see.
func (c *Client) RunHandler(ctx context.Context, handler, resource string) (int, error) {
	var out struct {
		Code int `json:"code"`
	}
	if err := c.do(ctx, "POST", "/v1/replication/handler", HandlerRequest{handler, resource}, &out); err != nil {
		return replication.ExitFailed, err
	}
	return out.Code, nil
}

// FormatReplication prints rs for people.
func FormatReplication(w io.Writer, rs *ReplicationStatus) {
	fmt.Fprintf(w, "Replicated volume %s", rs.Resource)
	if rs.Seeded != "" {
		fmt.Fprintf(w, " (created by %s)", rs.Seeded)
	}
	fmt.Fprintln(w)
	nodes := slices.Sorted(maps.Keys(rs.Nodes))
	standalone := false
	for _, n := range nodes {
		st := rs.Nodes[n]
		if !st.Up {
			fmt.Fprintf(w, "  %-10s down\n", n+":")
			continue
		}
		fmt.Fprintf(w, "  %-10s %-9s disk %-12s %-12s peer %s/%s", n+":", st.Role, st.Disk, st.Connection, st.PeerRole, st.PeerDisk)
		if st.OutOfSyncKiB > 0 {
			fmt.Fprintf(w, "  out of sync %d KiB", st.OutOfSyncKiB)
		}
		if st.Suspended != "" && st.Suspended != "no" {
			fmt.Fprintf(w, "  I/O FROZEN (%s)", st.Suspended)
		}
		fmt.Fprintln(w)
		standalone = standalone || st.Connection == "StandAlone"
	}
	if len(rs.Outdated) > 0 {
		fmt.Fprintf(w, "Outdated (may not be promoted until resynced): %s\n", strings.Join(rs.Outdated, ", "))
	}
	if rs.Resolve != nil {
		fmt.Fprintf(w, "Split-brain resolve pending since %s: keeping %s's data\n", rs.Resolve.At.Format(time.RFC3339), rs.Resolve.Keep)
	} else if standalone {
		fmt.Fprintln(w, "StandAlone: the nodes will not reconnect by themselves (split brain?).\n  Decide whose data to keep: tandemctl replication resolve-split-brain -keep NODE")
	}
}
