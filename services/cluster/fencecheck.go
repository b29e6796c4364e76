package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/cluster/core"
)

// A data node with a fence device for its peer checks the device (reads
// its power state, never changes it) every fenceCheckEvery and whenever
// an administrator asks (tandemctl fence test), and publishes the result
// for the status screen: a device that stopped answering is found before
// the failover that needs it, as Pacemaker's stonith monitor does.
const (
	// prefixFenceCheck + TARGET holds the last check of TARGET's device
	// (FenceCheck).
	prefixFenceCheck = "/tandem/fence/check/"
	// prefixFenceRequest + TARGET holds the id of a check asked for.
	prefixFenceRequest = "/tandem/fence/request/"
	fenceCheckEvery    = time.Minute
	// fenceTestWait bounds how long tandemctl fence test waits for the
	// device's holder to answer: the device's own timeouts and retries
	// (a few seconds) and a holder that is busy.
	fenceTestWait = 30 * time.Second
)

// FenceCheck is the last check of the device that powers Target off.
type FenceCheck struct {
	Target string    `json:"target"`
	By     string    `json:"by"` // the node that holds the device
	At     time.Time `json:"at"`
	// Power is "on" or "off" when the device answered; Error says why it
	// did not.
	Power string `json:"power,omitempty"`
	Error string `json:"error,omitempty"`
	// Request is the id of the test this check answered, if any.
	Request string `json:"request,omitempty"`
}

// fenceCheckLoop checks this node's fence devices now, every
// fenceCheckEvery, and when a test is asked for.
func (d *Daemon) fenceCheckLoop(ctx context.Context) {
	if len(d.fen) == 0 {
		return
	}
	checkAll := func() {
		for t := range d.fen {
			go d.checkFence(ctx, t, "")
		}
	}
	requests := d.cli.Watch(ctx, prefixFenceRequest, clientv3.WithPrefix())
	tick := time.NewTicker(fenceCheckEvery)
	defer tick.Stop()
	checkAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			checkAll()
		case wr, ok := <-requests:
			if !ok { // the watch ended (etcd restarted it): watch again
				requests = d.cli.Watch(ctx, prefixFenceRequest, clientv3.WithPrefix())
			}
			for _, ev := range wr.Events {
				t := string(ev.Kv.Key[len(prefixFenceRequest):])
				if ev.Type == clientv3.EventTypePut && d.fen[t] != nil {
					go d.checkFence(ctx, t, string(ev.Kv.Value))
				}
			}
		}
	}
}

// checkFence reads the power state of target's device and publishes it.
func (d *Daemon) checkFence(ctx context.Context, target, request string) {
	c, cancel := context.WithTimeout(ctx, fenceTestWait/2)
	defer cancel()
	fc := FenceCheck{Target: target, By: d.cfg.Node, Request: request}
	on, err := d.fen[target].PowerStatus(c)
	fc.At = time.Now().UTC()
	switch {
	case err != nil:
		fc.Error = err.Error()
		d.log.Warn("fence device check failed", "target", target, "err", err)
	case on:
		fc.Power = "on"
	default:
		fc.Power = "off"
	}
	b, _ := json.Marshal(fc)
	// Published until it is or the check is too old to matter (at the
	// daemon's start etcd may have no quorum yet).
	for {
		pc, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
		_, err := d.cli.Put(pc, prefixFenceCheck+target, string(b))
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		if time.Since(fc.At) > fenceCheckEvery/2 {
			d.log.Warn("fence device check not published", "target", target, "err", err) // the next one is
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// fenceChecks are the last checks of every device, by target.
func (d *Daemon) fenceChecks(ctx context.Context) ([]FenceCheck, error) {
	r, err := d.cli.Get(ctx, prefixFenceCheck, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []FenceCheck
	for _, kv := range r.Kvs {
		var fc FenceCheck
		if err := json.Unmarshal(kv.Value, &fc); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, fc)
	}
	return out, nil
}

// handleFenceTest asks the node that holds NODE's device to check it now
// and answers the check (POST /v1/fence/test/NODE).
func (d *Daemon) handleFenceTest(w http.ResponseWriter, r *http.Request) {
	target := r.PathValue("node")
	if m, ok := d.cfg.planned(target); !ok || m.Role != core.RoleData {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("fence test %s: not a data node of this cluster (only data nodes have fence devices)", target)})
		return
	}
	c, cancel := context.WithTimeout(r.Context(), fenceTestWait)
	defer cancel()
	var last FenceCheck
	if _, found, err := d.getJSON(c, prefixFenceCheck+target, &last); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"fence test: cluster state not readable (no quorum?): " + err.Error()})
		return
	} else if !found {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("fence test %s: no node has a fence device for it (cluster.nodes[].fence in the node config), or its holder never started", target)})
		return
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	req := hex.EncodeToString(id)
	watch := d.cli.Watch(c, prefixFenceCheck+target)
	if _, err := d.cli.Put(c, prefixFenceRequest+target, req); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"fence test: cluster state not writable (no quorum?): " + err.Error()})
		return
	}
	for wr := range watch {
		for _, ev := range wr.Events {
			var fc FenceCheck
			if json.Unmarshal(ev.Kv.Value, &fc) == nil && fc.Request == req {
				d.log.Info("api", "fence test", target, "by", fc.By, "power", fc.Power, "err", fc.Error, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
				writeJSON(w, 200, fc)
				return
			}
		}
	}
	err := c.Err()
	if err == nil {
		err = errors.New("watch ended")
	}
	writeJSON(w, http.StatusGatewayTimeout, apiError{fmt.Sprintf("fence test %s: %s (holder of the device) did not answer within %v: %v", target, last.By, fenceTestWait, err)})
}
