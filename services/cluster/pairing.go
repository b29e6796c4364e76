package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pairing: the creating node makes a one-time code; a joining node sends
// its public key and member details with an HMAC keyed by the code, and
// the serving member answers with the CA certificate, the joiner's signed
// certificate and the member list, HMAC'd the same way. Neither side
// trusts TLS for this exchange (the joiner has no CA yet): the code
// authenticates both. The code is consumed in an etcd transaction before
// anything changes, so a code works once, cluster-wide; the joiner enters
// etcd as a learner (no effect on quorum) and is promoted once caught up.

const codeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// Code lifetimes.
const (
	CreateCodeTTL = 24 * time.Hour
	CodeTTL       = time.Hour
)

// ErrPairingRefused is returned to a joiner whose code was wrong, used,
// expired or unknown.
var ErrPairingRefused = errors.New("pairing refused")

// NewCode returns a fresh code "XXXX-XXXX-XXXX-XXXX" (80 bits); its first
// group is its public id.
func NewCode() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pairing code: %w", err)
	}
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			s.WriteByte('-')
		}
		s.WriteByte(codeAlphabet[int(c)%len(codeAlphabet)])
	}
	return s.String(), nil
}

// normalizeCode uppercases and drops dashes and spaces; it returns the id
// and the whole secret.
func normalizeCode(code string) (id, secret string, err error) {
	c := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	if len(c) != 16 {
		return "", "", fmt.Errorf("pairing code %q: want 16 characters like ABCD-EFGH-JKLM-NPQR", code)
	}
	for _, r := range c {
		if !strings.ContainsRune(codeAlphabet, r) {
			return "", "", fmt.Errorf("pairing code %q: character %q is not used in codes", code, r)
		}
	}
	return c[:4], c, nil
}

type storedCode struct {
	Secret  string    `json:"secret"`
	Expires time.Time `json:"expires"`
}

type pairRequest struct {
	Cluster   string `json:"cluster"`
	CodeID    string `json:"code_id"`
	Member    Member `json:"member"`
	PublicKey string `json:"public_key"`
	Nonce     string `json:"nonce"`
	MAC       string `json:"mac,omitempty"`
}

type pairResponse struct {
	Cluster string   `json:"cluster"`
	CACert  string   `json:"ca_cert"`
	Cert    string   `json:"cert"`
	Members []Member `json:"members"`
	Nonce   string   `json:"nonce"`
	MAC     string   `json:"mac,omitempty"`
}

// mac is HMAC-SHA256 keyed by the code over v's JSON with MAC empty.
func mac(secret string, v any) string {
	b, _ := json.Marshal(v)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// Create makes a new cluster in the state directory: CA, this node's key
// and certificate, cluster.json (written last) and the first pairing code,
// which the daemon moves into etcd when it starts. With preset codes
// (unattended pairing, written into the nodes' configs beforehand) those
// are the codes, valid as long as a made one; the first is returned.
func Create(cfg *Config, st State, preset ...string) (string, error) {
	if st.Paired() {
		return "", fmt.Errorf("create cluster in %s: %w", st.Dir, ErrAlreadyPaired)
	}
	caCert, caKey, err := NewCA(cfg.Cluster)
	if err != nil {
		return "", err
	}
	k, keyPEM, err := NewKey()
	if err != nil {
		return "", err
	}
	crt, err := Issue(caCert, caKey, cfg.Node, net.ParseIP(cfg.Address), &k.PublicKey)
	if err != nil {
		return "", err
	}
	if len(preset) == 0 {
		code, err := NewCode()
		if err != nil {
			return "", err
		}
		preset = []string{code}
	}
	var stored []storedCode
	for _, code := range preset {
		_, secret, err := normalizeCode(code)
		if err != nil {
			return "", fmt.Errorf("create cluster: %w", err)
		}
		stored = append(stored, storedCode{Secret: secret, Expires: time.Now().Add(CreateCodeTTL)})
	}
	codes, _ := json.Marshal(stored)
	cf, _ := json.MarshalIndent(ClusterFile{Cluster: cfg.Cluster, Bootstrap: "new", Members: []Member{MemberOf(cfg)}}, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ca.crt", caCert}, {"ca.key", caKey}, {"node.key", keyPEM}, {"node.crt", crt}, {"pairing-codes", codes}, {"cluster.json", cf}} {
		if err := st.Write(f.name, f.b); err != nil {
			return "", fmt.Errorf("create cluster: %w", err)
		}
	}
	return preset[0], nil
}

// Join pairs this node with the cluster through the API at peer, using a
// one-time code. On any error nothing is written.
func Join(ctx context.Context, cfg *Config, st State, peer, code string) error {
	return join(ctx, cfg.Cluster, MemberOf(cfg), st, peer, code)
}

// AdminRole is the role of an administrator's certificate: it may use the
// API (tandemctl from a workstation) but is no etcd member.
const AdminRole = "admin"

// JoinAdmin obtains an administrator's certificate for name from cluster's
// API at peer with a one-time code, into st (used as tandemctl -state).
func JoinAdmin(ctx context.Context, cluster, name string, st State, peer, code string) error {
	return join(ctx, cluster, Member{Name: name, Role: AdminRole}, st, peer, code)
}

func join(ctx context.Context, cluster string, self Member, st State, peer, code string) error {
	if st.Paired() {
		return fmt.Errorf("join %s: %w", peer, ErrAlreadyPaired)
	}
	id, secret, err := normalizeCode(code)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	k, keyPEM, err := NewKey()
	if err != nil {
		return err
	}
	pub, err := PublicKeyPEM(&k.PublicKey)
	if err != nil {
		return err
	}
	nonce, _ := NewCode()
	req := pairRequest{Cluster: cluster, CodeID: id, Member: self, PublicKey: string(pub), Nonce: nonce}
	req.MAC = mac(secret, req)
	resp, err := postPair(ctx, peer, req)
	for i := 0; errors.Is(err, ErrBusy) && i < 60; i++ {
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w", peer, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
		resp, err = postPair(ctx, peer, req)
	}
	if err != nil {
		return err
	}
	got := resp.MAC
	resp.MAC = ""
	if !hmac.Equal([]byte(got), []byte(mac(secret, resp))) || resp.Nonce != nonce {
		return fmt.Errorf("join %s: the answer is not authenticated by the pairing code: %w", peer, ErrPairingRefused)
	}
	if err := checkIssued(resp, k.PublicKey.Equal); err != nil {
		return fmt.Errorf("join %s: %w", peer, err)
	}
	bootstrap := "existing"
	if self.Role == AdminRole {
		bootstrap = AdminRole // an administrator's directory: no etcd here
	}
	cf, _ := json.MarshalIndent(ClusterFile{Cluster: resp.Cluster, Bootstrap: bootstrap, Members: resp.Members}, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ca.crt", []byte(resp.CACert)}, {"node.key", keyPEM}, {"node.crt", []byte(resp.Cert)}, {"cluster.json", cf}} {
		if err := st.Write(f.name, f.b); err != nil {
			return fmt.Errorf("join: %w", err)
		}
	}
	return nil
}

func checkIssued(resp *pairResponse, ownKey func(crypto.PublicKey) bool) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(resp.CACert)) {
		return errors.New("answer has no CA certificate")
	}
	blk, _ := pem.Decode([]byte(resp.Cert))
	if blk == nil {
		return errors.New("answer has no certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if !ownKey(c.PublicKey) {
		return errors.New("issued certificate is not for this node's key")
	}
	return nil
}

func postPair(ctx context.Context, peer string, req pairRequest) (*pairResponse, error) {
	body, _ := json.Marshal(req)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		// The joiner has no CA yet; the HMAC authenticates the answer.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(peer, "/")+"/v1/pair", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", peer, err)
	}
	r, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("join: cannot reach %s: %w", peer, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if r.StatusCode == http.StatusConflict {
		return nil, fmt.Errorf("join %s: %w", peer, ErrBusy)
	}
	if r.StatusCode == http.StatusForbidden {
		return nil, fmt.Errorf("join %s: %w: %s", peer, ErrPairingRefused, strings.TrimSpace(string(b)))
	}
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("join %s: %s: %s", peer, r.Status, strings.TrimSpace(string(b)))
	}
	var resp pairResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("join %s: answer: %w", peer, err)
	}
	return &resp, nil
}

// refusal is a pairing attempt turned away, with the reason logged.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

// pair serves one pairing request (see the comment at the top).
func (d *Daemon) pair(ctx context.Context, req pairRequest) (*pairResponse, error) {
	if !d.booted.Load() {
		return nil, ErrBusy
	}
	got := req.MAC
	req.MAC = ""
	ck := prefixPairing + req.CodeID
	gr, err := d.cli.Get(ctx, ck)
	if err != nil {
		return nil, fmt.Errorf("read pairing code: %w", err)
	}
	if len(gr.Kvs) == 0 {
		return nil, &refusal{"unknown or already used pairing code"}
	}
	var sc storedCode
	if err := json.Unmarshal(gr.Kvs[0].Value, &sc); err != nil {
		return nil, fmt.Errorf("stored pairing code: %w", err)
	}
	switch {
	case !hmac.Equal([]byte(got), []byte(mac(sc.Secret, req))):
		return nil, &refusal{"wrong pairing code"}
	case time.Now().After(sc.Expires):
		return nil, &refusal{"pairing code expired"}
	case req.Cluster != d.cf.Cluster:
		return nil, &refusal{fmt.Sprintf("cluster %q, this is %q", req.Cluster, d.cf.Cluster)}
	case !nameRE.MatchString(req.Member.Name):
		return nil, &refusal{"bad member name"}
	case req.Member.Role != AdminRole && net.ParseIP(req.Member.Address).To4() == nil:
		return nil, &refusal{"bad member address"}
	}
	if req.Member.Role == AdminRole {
		return d.admitAdmin(ctx, req, gr.Kvs[0].ModRevision, sc.Secret)
	}
	ml, err := d.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	for _, m := range ml.Members {
		if m.Name == req.Member.Name {
			return nil, &refusal{"a member named " + m.Name + " already exists"}
		}
		if m.IsLearner {
			// etcd admits one learner at a time; the code stays unused.
			return nil, ErrBusy
		}
	}
	// Consume the code first: from here on it can never be used again.
	tr, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ck), "=", gr.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(ck)).Commit()
	if err != nil {
		return nil, fmt.Errorf("consume pairing code: %w", err)
	}
	if !tr.Succeeded {
		return nil, &refusal{"pairing code already used"}
	}
	resp, err := d.admit(ctx, req, sc.Secret)
	if err != nil {
		d.log.Info("pairing: nothing joined, code restored", "node", req.Member.Name, "err", err)
		d.restoreCode(context.WithoutCancel(ctx), ck, gr.Kvs[0].Value)
	}
	return resp, err
}

// restoreCode makes a consumed code usable again after a join that added
// nothing. The write is retried: it comes when etcd is busiest (a member
// just joined and leadership moves to the arbitrator), and one restore
// that timed out once, unchecked, locked the joiner out for good ("unknown
// or already used pairing code" to every retry). Only an absent code is
// written, so a retry after a lost answer changes nothing.
func (d *Daemon) restoreCode(ctx context.Context, ck string, value []byte) {
	err := d.retryEtcd(ctx, 10, "pairing: restore the code", func(c context.Context) error {
		_, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)).Then(clientv3.OpPut(ck, string(value))).Commit()
		return err
	})
	if err != nil {
		d.log.Error("pairing: the code could not be restored; make a new one (tandemctl cluster code)", "err", err)
	}
}

// retryEtcd runs op, each try within the request timeout, until it
// succeeds, ctx ends or tries (0: no limit) are used up, every 500 ms,
// and returns op's last error. A busy etcd drops or times out a proposal
// now and then (while leadership moves, above all) with nothing applied,
// so op must be safe to repeat.
func (d *Daemon) retryEtcd(ctx context.Context, tries int, what string, op func(context.Context) error) error {
	for i := 1; ; i++ {
		c, cancel := context.WithTimeout(ctx, d.cfg.requestTimeout())
		err := op(c)
		cancel()
		if err == nil || i == tries {
			return err
		}
		d.log.Warn(what+": retrying", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrBusy says another node is still joining; the joiner retries.
var ErrBusy = errors.New("another node is still joining; try again in a few seconds")

// admit signs the joiner's certificate and adds it as a learner; if a
// later step fails, the learner is removed again.
func (d *Daemon) admit(ctx context.Context, req pairRequest, secret string) (*pairResponse, error) {
	caCert, crt, err := d.issue(ctx, req, net.ParseIP(req.Member.Address))
	if err != nil {
		return nil, err
	}
	ar, err := d.cli.MemberAddAsLearner(ctx, []string{req.Member.PeerURL()})
	if errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrTooManyLearners) {
		return nil, ErrBusy // a member that just joined is not settled yet
	}
	if err != nil {
		return nil, fmt.Errorf("add member %s: %w", req.Member.Name, err)
	}
	mj, _ := json.Marshal(req.Member)
	members, err := d.members(ctx)
	if err == nil {
		_, err = d.cli.Put(ctx, prefixNodes+req.Member.Name, string(mj))
	}
	if err != nil {
		if _, rerr := d.cli.MemberRemove(context.Background(), ar.Member.ID); rerr != nil {
			d.log.Error("pairing: remove half-added member", "node", req.Member.Name, "err", rerr)
		}
		return nil, fmt.Errorf("register member %s: %w", req.Member.Name, err)
	}
	members = append(members, req.Member)
	resp := &pairResponse{Cluster: d.cf.Cluster, CACert: string(caCert), Cert: string(crt), Members: members, Nonce: req.Nonce}
	resp.MAC = mac(secret, resp)
	return resp, nil
}

// issue signs the certificate the joiner asked for (its key, its name,
// addr) with the cluster CA and returns the CA's and the new certificate.
func (d *Daemon) issue(ctx context.Context, req pairRequest, addr net.IP) (caCert, crt []byte, err error) {
	pub, err := ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		return nil, nil, &refusal{"bad public key: " + err.Error()}
	}
	if caCert, err = d.st.Read("ca.crt"); err != nil {
		return nil, nil, err
	}
	caKey, err := d.caKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	crt, err = Issue(caCert, caKey, req.Member.Name, addr, pub)
	return caCert, crt, err
}

// admitAdmin consumes the code and signs an administrator's certificate;
// nothing joins etcd.
func (d *Daemon) admitAdmin(ctx context.Context, req pairRequest, rev int64, secret string) (*pairResponse, error) {
	ck := prefixPairing + req.CodeID
	tr, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev)).Then(clientv3.OpDelete(ck)).Commit()
	if err != nil {
		return nil, fmt.Errorf("consume pairing code: %w", err)
	}
	if !tr.Succeeded {
		return nil, &refusal{"pairing code already used"}
	}
	caCert, crt, err := d.issue(ctx, req, net.IPv4(127, 0, 0, 1))
	if err != nil {
		return nil, err
	}
	members, err := d.members(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pairResponse{Cluster: d.cf.Cluster, CACert: string(caCert), Cert: string(crt), Members: members, Nonce: req.Nonce}
	resp.MAC = mac(secret, resp)
	return resp, nil
}

// members returns the registered members.
func (d *Daemon) members(ctx context.Context) ([]Member, error) {
	r, err := d.cli.Get(ctx, prefixNodes, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	var out []Member
	for _, kv := range r.Kvs {
		var m Member
		if json.Unmarshal(kv.Value, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func (d *Daemon) caKey(ctx context.Context) ([]byte, error) {
	if b, err := d.st.Read("ca.key"); err == nil {
		return b, nil
	}
	r, err := d.cli.Get(ctx, keyCAKey)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, errors.New("CA key: not in the state directory nor in etcd")
	}
	return r.Kvs[0].Value, nil
}

// MintCode stores a new one-time code in etcd and returns it.
func (d *Daemon) MintCode(ctx context.Context, ttl time.Duration) (string, error) {
	code, err := NewCode()
	if err != nil {
		return "", err
	}
	id, secret, _ := normalizeCode(code)
	b, _ := json.Marshal(storedCode{Secret: secret, Expires: time.Now().Add(ttl)})
	if _, err := d.cli.Put(ctx, prefixPairing+id, string(b)); err != nil {
		return "", fmt.Errorf("store pairing code: %w", err)
	}
	return code, nil
}
