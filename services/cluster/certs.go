package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Certificates after pairing: the registry of issued certificates
// (prefixCerts), revocation (prefixRevoked and the signed list at keyCRL,
// copied to every member's crl.der), renewal of node certificates, the
// CA key on every member, and the cleanup of learners that never start.
// docs/security.md has the design.

// isRevoked reports whether c is on the revocation list.
func (d *Daemon) isRevoked(c *x509.Certificate) bool {
	m := d.revoked.Load()
	return m != nil && (*m)[serialHex(c.SerialNumber)]
}

// loadCRL reads crl.der at start, making an empty one if a member with
// the CA key has none.
func (d *Daemon) loadCRL() error {
	ca, err := d.st.Read("ca.crt")
	if err != nil {
		return err
	}
	b, err := os.ReadFile(d.st.Path("crl.der"))
	if errors.Is(err, os.ErrNotExist) {
		key, kerr := d.st.Read("ca.key")
		if kerr != nil {
			d.log.Warn("no revocation list yet (it comes from the cluster)")
			return nil
		}
		if b, err = NewCRL(ca, key, nil); err == nil {
			err = d.st.Write("crl.der", b)
		}
	}
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	return d.applyCRL(ca, b)
}

// applyCRL checks and uses a revocation list.
func (d *Daemon) applyCRL(ca, crl []byte) error {
	set, err := crlSerials(ca, crl)
	if err != nil {
		return err
	}
	d.revoked.Store(&set)
	return nil
}

// syncCRL copies the cluster's revocation list to crl.der when it changed.
func (d *Daemon) syncCRL(ctx context.Context) error {
	g, err := d.cli.Get(ctx, keyCRL)
	if err != nil || len(g.Kvs) == 0 {
		return err
	}
	crl := g.Kvs[0].Value
	if cur, err := os.ReadFile(d.st.Path("crl.der")); err == nil && bytes.Equal(cur, crl) {
		return nil
	}
	ca, err := d.st.Read("ca.crt")
	if err != nil {
		return err
	}
	if err := d.applyCRL(ca, crl); err != nil {
		return err
	}
	d.log.Info("revocation list updated", "revoked", len(*d.revoked.Load()))
	return d.st.Write("crl.der", crl)
}

// revoke adds serials to the revocation list: etcd first (with the new
// signed list), then this member's crl.der; the others copy it within
// seconds (memberLoop).
func (d *Daemon) revoke(ctx context.Context, serials []string) error {
	ca, err := d.st.Read("ca.crt")
	if err != nil {
		return err
	}
	key, err := d.st.Read("ca.key")
	if err != nil {
		return fmt.Errorf("this member has no CA key yet; ask another member: %w", err)
	}
	g, err := d.cli.Get(ctx, prefixRevoked, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	all := map[string]bool{}
	for _, kv := range g.Kvs {
		all[strings.TrimPrefix(string(kv.Key), prefixRevoked)] = true
	}
	var ops []clientv3.Op
	for _, s := range serials {
		all[s] = true
		ops = append(ops, clientv3.OpPut(prefixRevoked+s, time.Now().UTC().Format(time.RFC3339)))
	}
	var list []*big.Int
	for _, s := range slices.Sorted(maps.Keys(all)) {
		n, ok := new(big.Int).SetString(s, 16)
		if !ok {
			return fmt.Errorf("revoked serial %q is not hexadecimal", s)
		}
		list = append(list, n)
	}
	crl, err := NewCRL(ca, key, list)
	if err != nil {
		return err
	}
	if _, err := d.cli.Txn(ctx).Then(append(ops, clientv3.OpPut(keyCRL, string(crl)))...).Commit(); err != nil {
		return fmt.Errorf("store revocation: %w", err)
	}
	if err := d.applyCRL(ca, crl); err != nil {
		return err
	}
	return d.st.Write("crl.der", crl)
}

// certsOf returns the serials of the certificates issued to name, or the
// serial given if it was issued.
func (d *Daemon) certsOf(ctx context.Context, name, serial string) ([]string, error) {
	g, err := d.cli.Get(ctx, prefixCerts, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range g.Kvs {
		s := strings.TrimPrefix(string(kv.Key), prefixCerts)
		var is issued
		if json.Unmarshal(kv.Value, &is) != nil {
			continue
		}
		if s == serial || (name != "" && is.Name == name) {
			out = append(out, s)
		}
	}
	return out, nil
}

// normalizeSerial accepts a serial as openssl prints it (colons, upper
// case) or as tandem does.
func normalizeSerial(s string) (string, error) {
	n, ok := new(big.Int).SetString(strings.ReplaceAll(strings.ToLower(s), ":", ""), 16)
	if !ok {
		return "", fmt.Errorf("serial %q: want hexadecimal", s)
	}
	return serialHex(n), nil
}

func (d *Daemon) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) {
		return
	}
	if (req.Name == "") == (req.Serial == "") {
		writeJSON(w, http.StatusBadRequest, apiError{"revoke: give a serial or a name"})
		return
	}
	serial := ""
	if req.Serial != "" {
		var err error
		if serial, err = normalizeSerial(req.Serial); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"revoke: " + err.Error()})
			return
		}
	}
	c, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	serials, err := d.certsOf(c, req.Name, serial)
	if err == nil && len(serials) == 0 {
		writeJSON(w, http.StatusBadRequest, apiError{"revoke: no certificate issued to " + strings.TrimSpace(req.Name+" "+req.Serial)})
		return
	}
	if err == nil {
		err = d.revoke(c, serials)
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"revoke: " + err.Error()})
		return
	}
	d.log.Warn("certificates revoked", "serials", serials, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSON(w, 200, map[string][]string{"revoked": serials})
}

// handleRemove removes a member: out of etcd, unregistered, its
// certificates revoked. It refuses this node (ask another member) and
// the group's owner (move the group first).
func (d *Daemon) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) {
		return
	}
	n, ok := d.cfg.planned(req.Node)
	switch {
	case !ok:
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("remove: %q is not in cluster.nodes", req.Node)})
		return
	case req.Node == d.cfg.Node:
		writeJSON(w, http.StatusBadRequest, apiError{"remove: " + req.Node + " is the node serving this request; ask another member"})
		return
	}
	c, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	err := d.removeMember(c, n)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		writeJSON(w, http.StatusConflict, apiError{"remove: " + ref.reason})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{"remove: " + err.Error()})
	default:
		d.log.Warn("member removed", "node", n.Name, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
		writeJSON(w, 200, map[string]string{"ok": "removed " + n.Name})
	}
}

func (d *Daemon) removeMember(ctx context.Context, n NodeSpec) error {
	g, err := d.cli.Get(ctx, keyOwner)
	if err != nil {
		return err
	}
	if len(g.Kvs) > 0 && string(g.Kvs[0].Value) == n.Name {
		return &refusal{reason: n.Name + " runs the group: move it first (tandemctl resource move)"}
	}
	ml, err := d.cli.MemberList(ctx)
	if err != nil {
		return err
	}
	peer := Member{Address: n.Address}
	for _, m := range ml.Members {
		if m.Name == n.Name || (m.Name == "" && slices.ContainsFunc(m.PeerURLs, func(u string) bool { return strings.Contains(u, "//"+peer.Address+":") })) {
			if _, err := d.cli.MemberRemove(ctx, m.ID); err != nil {
				return fmt.Errorf("remove etcd member: %w", err)
			}
		}
	}
	if _, err := d.cli.Txn(ctx).Then(clientv3.OpDelete(prefixNodes+n.Name), clientv3.OpDelete(prefixAlive+n.Name)).Commit(); err != nil {
		return err
	}
	serials, err := d.certsOf(ctx, n.Name, "")
	if err != nil || len(serials) == 0 {
		return err
	}
	return d.revoke(ctx, serials)
}

// handleCAKey gives the CA key to a member that has none (it joined
// after the founder): every member holds it, so any can admit a
// replacement node or revoke while the others are down.
func (d *Daemon) handleCAKey(w http.ResponseWriter, r *http.Request) {
	name := r.TLS.PeerCertificates[0].Subject.CommonName
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	ms, err := d.members(c)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
		return
	}
	if !slices.ContainsFunc(ms, func(m Member) bool { return m.Name == name }) {
		writeJSON(w, http.StatusForbidden, apiError{name + " is not a registered member"})
		return
	}
	key, err := d.st.Read("ca.key")
	if err != nil {
		writeJSON(w, http.StatusNotFound, apiError{"this member has no CA key either"})
		return
	}
	d.log.Info("CA key handed to a member", "node", name)
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(key) // the member asks again if this is cut off
}

// fetchCAKey asks the other members for the CA key until one gives it;
// the key is checked against ca.crt before it is written.
func (d *Daemon) fetchCAKey(ctx context.Context) error {
	ca, err := d.st.Read("ca.crt")
	if err != nil {
		return err
	}
	caCert, err := ParseCert(ca)
	if err != nil {
		return err
	}
	ms, err := d.members(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if m.Name == d.cfg.Node {
			continue
		}
		key, err := d.getCAKey(ctx, m.APIURL())
		if err == nil {
			err = matchesCert(key, caCert)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		if err := d.st.Write("ca.key", key); err != nil {
			return err
		}
		d.log.Info("CA key received", "from", m.Name)
		return nil
	}
	return errors.Join(errs...)
}

func (d *Daemon) getCAKey(ctx context.Context, endpoint string) ([]byte, error) {
	cl, err := NewClient(d.st, endpoint)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.Endpoint+"/v1/ca/key", nil)
	if err != nil {
		return nil, err
	}
	r, err := cl.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", r.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// matchesCert checks a PEM private key is the key of c.
func matchesCert(keyPEM []byte, c *x509.Certificate) error {
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return errors.New("CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(c.PublicKey) {
		return errors.New("CA key: not the key of the cluster CA")
	}
	return nil
}

// renewIfDue gives this node a new certificate (same key, new serial)
// once less than a third of its lifetime is left. etcd and the API read
// the certificate at every handshake, so nothing restarts.
func (d *Daemon) renewIfDue(ctx context.Context, now time.Time) (bool, error) {
	b, err := d.st.Read("node.crt")
	if err != nil {
		return false, err
	}
	cur, err := ParseCert(b)
	if err != nil {
		return false, err
	}
	if cur.NotAfter.Sub(now) > NodeLifetime/3 {
		return false, nil
	}
	pair, err := d.st.keyPair()
	if err != nil {
		return false, err
	}
	signer, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return false, errors.New("renew: node key is not ECDSA")
	}
	crt, err := d.issue(ctx, CertSpec{Name: d.cfg.Node, Role: CertNode, Addr: net.ParseIP(d.cfg.Address)}, &signer.PublicKey)
	if err != nil {
		return false, fmt.Errorf("renew: %w", err)
	}
	if err := d.st.Write("node.crt", crt); err != nil {
		return false, err
	}
	d.log.Info("node certificate renewed", "was_valid_until", cur.NotAfter.Format(time.RFC3339))
	return true, nil
}

// dropStaleLearners removes learners that were admitted but never
// started (etcd knows no name for them) for the learner timeout: a
// joiner whose answer was lost, or that died, otherwise holds etcd's one
// learner place for good and every later join waits. seen keeps when
// each was first seen; memberLoop owns it.
func (d *Daemon) dropStaleLearners(ctx context.Context, ms []*memberInfo, seen map[uint64]time.Time, now time.Time) {
	present := map[uint64]bool{}
	for _, m := range ms {
		if !m.learner || m.name != "" {
			continue
		}
		present[m.id] = true
		first, ok := seen[m.id]
		if !ok {
			seen[m.id] = now
			continue
		}
		if now.Sub(first) < d.cfg.LearnerTimeout {
			continue
		}
		if _, err := d.cli.MemberRemove(ctx, m.id); err != nil {
			d.log.Warn("remove a learner that never started", "peer", m.peerURLs, "err", err)
			continue
		}
		registered, err := d.members(ctx)
		if err != nil {
			d.log.Warn("unregister a learner that never started", "err", err)
		}
		for _, r := range registered {
			if slices.Contains(m.peerURLs, r.PeerURL()) {
				if _, err := d.cli.Delete(ctx, prefixNodes+r.Name); err != nil {
					d.log.Warn("unregister a learner that never started", "node", r.Name, "err", err)
				}
			}
		}
		d.log.Warn("removed a learner that never started; pair it again with a new code", "peer", m.peerURLs, "after", d.cfg.LearnerTimeout)
		delete(seen, m.id)
	}
	for id := range seen {
		if !present[id] {
			delete(seen, id)
		}
	}
}

// memberInfo is what dropStaleLearners needs of an etcd member.
type memberInfo struct {
	id       uint64
	name     string
	learner  bool
	peerURLs []string
}

// sweepCodes deletes expired pairing codes.
func (d *Daemon) sweepCodes(ctx context.Context, now time.Time) error {
	g, err := d.cli.Get(ctx, prefixPairing, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range g.Kvs {
		var sc storedCode
		if json.Unmarshal(kv.Value, &sc) == nil && now.After(sc.Expires) {
			if _, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).Then(clientv3.OpDelete(string(kv.Key))).Commit(); err != nil {
				return err
			}
		}
	}
	return nil
}
