package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
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
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pairing: the creating node makes one-time codes, each bound to a name
// and a role (a planned member, an administrator or a monitor); a
// joining node sends its public key and member details with an HMAC
// keyed by the code, and the serving member answers with the CA
// certificate, the joiner's signed certificate, the revocation list and
// the member list, HMAC'd the same way. Neither side trusts TLS for this
// exchange (the joiner has no CA yet): the code authenticates both. The
// code is marked used in an etcd transaction before anything changes, so
// it works once, cluster-wide, for one key: the joiner keeps its key
// (pending.key) until it is paired, so when the answer is lost it asks
// again with the same key and gets a certificate again, while anyone
// else is refused. A node enters etcd as a learner (no effect on
// quorum) and is promoted once caught up.
//
// A code's first four characters are its public id (its etcd key); the
// other twelve, 60 bits, are the secret. A code dies after
// maxCodeFailures wrong tries, and a source address is turned away for
// sourceWindow after maxSourceFailures refusals.

const codeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// Code lifetimes.
const (
	CreateCodeTTL = 24 * time.Hour
	CodeTTL       = time.Hour
)

// Limits on guessing.
const (
	maxCodeFailures   = 5
	maxSourceFailures = 10
	sourceWindow      = 10 * time.Minute
)

// Client roles in pairing (a member's role is its core.Role).
const (
	AdminRole   = CertAdmin
	MonitorRole = CertMonitor
)

// ErrPairingRefused is returned to a joiner whose code was wrong, used,
// expired, unknown or bound to another name.
var ErrPairingRefused = errors.New("pairing refused")

// ErrTooManyAttempts says the source address is turned away for a while.
var ErrTooManyAttempts = errors.New("too many refused pairing attempts from this address; wait and try again")

// NewCode returns a fresh code "XXXX-XXXX-XXXX-XXXX" (80 random bits: a
// 20-bit public id and a 60-bit secret).
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
		// 256 is a multiple of 32: every letter is equally likely.
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
			return "", "", fmt.Errorf("pairing code %q: character %q is not used in codes (no 0, 1, I or O)", code, r)
		}
	}
	return c[:4], c, nil
}

// storedCode is a code in etcd (and in pairing-codes until the founder's
// daemon moves it there).
type storedCode struct {
	Secret  string    `json:"secret"`
	Expires time.Time `json:"expires"`
	// Name and Role are what the code pairs: a planned member (role data
	// or arbitrator) or an administrator or monitor of that name.
	Name string `json:"name"`
	Role string `json:"role"`
	// Failures counts wrong tries; the code is deleted at maxCodeFailures.
	Failures int `json:"failures,omitempty"`
	// UsedBy is the SHA-256 of the public key the code was used for.
	UsedBy string `json:"used_by,omitempty"`
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
	CRL     []byte   `json:"crl"` // DER
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

// keyHash is what storedCode.UsedBy holds.
func keyHash(publicKeyPEM string) string {
	h := sha256.Sum256([]byte(publicKeyPEM))
	return hex.EncodeToString(h[:])
}

// bindCode checks that a code may be bound to name as role: a node role
// for a planned member of that role, a client role for any other name.
// It returns the role ("" role: the planned member's).
func bindCode(cfg *Config, name, role string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("%q: want a lower-case name of letters, digits and dashes", name)
	}
	n, planned := cfg.planned(name)
	switch {
	case role == AdminRole || role == MonitorRole:
		if planned {
			return "", fmt.Errorf("%s is a member of the cluster (cluster.nodes): an %s needs another name", name, role)
		}
		return role, nil
	case !planned:
		return "", fmt.Errorf("%s is not in cluster.nodes (an administrator's or monitor's code needs the role admin or monitor)", name)
	case role != "" && role != string(n.Role):
		return "", fmt.Errorf("%s is planned as %s, not %s", name, n.Role, role)
	case name == cfg.Node:
		return "", fmt.Errorf("%s is this node", name)
	}
	return string(n.Role), nil
}

// Create makes a new cluster in the state directory: CA, this node's key
// and certificate, an empty revocation list, cluster.json (written last)
// and the pairing codes, which the daemon moves into etcd when it starts.
// preset maps names to codes (unattended pairing, written into the
// nodes' configs beforehand): a planned member's name binds its code to
// that member, any other name to an administrator. Without preset, one
// code is made for every other planned member and one for the
// administrator "admin". It returns the codes by name.
func Create(cfg *Config, st State, preset map[string]string) (map[string]string, error) {
	if st.Paired() {
		return nil, fmt.Errorf("create cluster in %s: %w", st.Dir, ErrAlreadyPaired)
	}
	if len(preset) == 0 {
		preset = map[string]string{}
		for _, n := range append(slices.Clone(cfg.Nodes), NodeSpec{Name: AdminRole}) {
			if n.Name == cfg.Node {
				continue
			}
			code, err := NewCode()
			if err != nil {
				return nil, err
			}
			preset[n.Name] = code
		}
	}
	var stored []storedCode
	ids := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(preset)) {
		role := AdminRole
		if _, ok := cfg.planned(name); ok {
			role = ""
		}
		role, err := bindCode(cfg, name, role)
		if err != nil {
			return nil, fmt.Errorf("create cluster: code for %w", err)
		}
		id, secret, err := normalizeCode(preset[name])
		if err != nil {
			return nil, fmt.Errorf("create cluster: code for %s: %w", name, err)
		}
		if other, ok := ids[id]; ok {
			return nil, fmt.Errorf("create cluster: the codes for %s and %s start alike (%s): make new ones", other, name, id)
		}
		ids[id] = name
		stored = append(stored, storedCode{Secret: secret, Expires: time.Now().Add(CreateCodeTTL), Name: name, Role: role})
	}
	caCert, caKey, err := NewCA(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	k, keyPEM, err := NewKey()
	if err != nil {
		return nil, err
	}
	crt, err := Issue(caCert, caKey, CertSpec{Name: cfg.Node, Role: CertNode, Addr: net.ParseIP(cfg.Address)}, &k.PublicKey)
	if err != nil {
		return nil, err
	}
	crl, err := NewCRL(caCert, caKey, nil)
	if err != nil {
		return nil, err
	}
	codes, _ := json.Marshal(stored)
	cf, _ := json.MarshalIndent(ClusterFile{Cluster: cfg.Cluster, Bootstrap: "new", Members: []Member{MemberOf(cfg)}}, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ca.crt", caCert}, {"ca.key", caKey}, {"node.key", keyPEM}, {"node.crt", crt}, {"crl.der", crl}, {"pairing-codes", codes}, {"cluster.json", cf}} {
		if err := st.Write(f.name, f.b); err != nil {
			return nil, fmt.Errorf("create cluster: %w", err)
		}
	}
	return preset, nil
}

// Join pairs this node with the cluster through the API at peer, using a
// one-time code. On any error only the key it asks a certificate for is
// written (pending.key), to ask again with it.
func Join(ctx context.Context, cfg *Config, st State, peer, code string) error {
	return join(ctx, cfg.Cluster, MemberOf(cfg), st, peer, code)
}

// JoinClient obtains an administrator's or monitor's (role) certificate
// for name from cluster's API at peer with a one-time code, into st (used
// as tandemctl -state).
func JoinClient(ctx context.Context, cluster, name, role string, st State, peer, code string) error {
	if role != AdminRole && role != MonitorRole {
		return fmt.Errorf("join %s: role %q: want admin or monitor", peer, role)
	}
	return join(ctx, cluster, Member{Name: name, Role: role}, st, peer, code)
}

// pendingKey returns the key a join asks a certificate for: the one an
// earlier, unanswered try made, or a new one.
func pendingKey(st State) (*ecdsa.PrivateKey, []byte, error) {
	if b, err := os.ReadFile(st.Path("pending.key")); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
				if ek, ok := k.(*ecdsa.PrivateKey); ok {
					return ek, b, nil
				}
			}
		}
	}
	k, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	if err := st.Write("pending.key", keyPEM); err != nil {
		return nil, nil, err
	}
	return k, keyPEM, nil
}

func join(ctx context.Context, cluster string, self Member, st State, peer, code string) error {
	if st.Paired() {
		return fmt.Errorf("join %s: %w", peer, ErrAlreadyPaired)
	}
	id, secret, err := normalizeCode(code)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	k, keyPEM, err := pendingKey(st)
	if err != nil {
		return fmt.Errorf("join: %w", err)
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
	if self.Role == AdminRole || self.Role == MonitorRole {
		bootstrap = self.Role // a client's directory: no etcd here
	}
	cf, _ := json.MarshalIndent(ClusterFile{Cluster: resp.Cluster, Bootstrap: bootstrap, Members: resp.Members}, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ca.crt", []byte(resp.CACert)}, {"node.key", keyPEM}, {"node.crt", []byte(resp.Cert)}, {"crl.der", resp.CRL}, {"cluster.json", cf}} {
		if err := st.Write(f.name, f.b); err != nil {
			return fmt.Errorf("join: %w", err)
		}
	}
	if err := os.Remove(st.Path("pending.key")); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return nil
}

func checkIssued(resp *pairResponse, ownKey func(crypto.PublicKey) bool) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(resp.CACert)) {
		return errors.New("answer has no CA certificate")
	}
	c, err := ParseCert([]byte(resp.Cert))
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if !ownKey(c.PublicKey) {
		return errors.New("issued certificate is not for this node's key")
	}
	if _, err := crlSerials([]byte(resp.CACert), resp.CRL); err != nil {
		return err
	}
	return nil
}

func postPair(ctx context.Context, peer string, req pairRequest) (*pairResponse, error) {
	body, _ := json.Marshal(req)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		// The joiner has no CA yet; the HMAC authenticates the answer.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer hc.CloseIdleConnections()
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
	switch r.StatusCode {
	case http.StatusOK:
	case http.StatusConflict:
		return nil, fmt.Errorf("join %s: %w", peer, ErrBusy)
	case http.StatusForbidden:
		return nil, fmt.Errorf("join %s: %w: %s", peer, ErrPairingRefused, strings.TrimSpace(string(b)))
	case http.StatusTooManyRequests:
		return nil, fmt.Errorf("join %s: %w", peer, ErrTooManyAttempts)
	default:
		return nil, fmt.Errorf("join %s: %s: %s", peer, r.Status, strings.TrimSpace(string(b)))
	}
	var resp pairResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("join %s: answer: %w", peer, err)
	}
	return &resp, nil
}

// refusal is a pairing attempt turned away, with the reason logged.
// Before the code's MAC is checked every refusal reads the same to the
// joiner (refusedCode), so it cannot tell whether a code id exists.
type refusal struct {
	reason string
	// hidden: the joiner reads refusedCode, not the reason.
	hidden bool
}

func (r *refusal) Error() string { return r.reason }

// told is what the joiner reads.
func (r *refusal) told() string {
	if r.hidden {
		return refusedCode
	}
	return r.reason
}

// refusedCode is what a joiner reads for an unknown, wrong or expired code.
const refusedCode = "wrong, unknown or expired pairing code"

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
		return nil, &refusal{"unknown pairing code", true}
	}
	rev := gr.Kvs[0].ModRevision
	var sc storedCode
	if err := json.Unmarshal(gr.Kvs[0].Value, &sc); err != nil {
		return nil, fmt.Errorf("stored pairing code: %w", err)
	}
	if !hmac.Equal([]byte(got), []byte(mac(sc.Secret, req))) {
		d.codeFailed(ctx, ck, rev, sc)
		return nil, &refusal{"wrong pairing code", true}
	}
	if time.Now().After(sc.Expires) {
		return nil, &refusal{"pairing code expired", true}
	}
	// The joiner knows the code: from here on refusals say why.
	role := req.Member.Role
	switch {
	case req.Cluster != d.cf.Cluster:
		return nil, &refusal{reason: fmt.Sprintf("cluster %q, this is %q", req.Cluster, d.cf.Cluster)}
	case req.Member.Name != sc.Name || role != sc.Role:
		d.codeFailed(ctx, ck, rev, sc)
		return nil, &refusal{reason: fmt.Sprintf("the code is for %s (%s), not %s (%s)", sc.Name, sc.Role, req.Member.Name, role)}
	case sc.UsedBy != "" && sc.UsedBy != keyHash(req.PublicKey):
		return nil, &refusal{reason: "pairing code already used"}
	}
	if role == AdminRole || role == MonitorRole {
		return d.admitClient(ctx, req, ck, rev, sc)
	}
	if n, _ := d.cfg.planned(req.Member.Name); req.Member.Address != n.Address {
		return nil, &refusal{reason: fmt.Sprintf("%s is planned at %s, not %q", n.Name, n.Address, req.Member.Address)}
	}
	ml, err := d.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	for _, m := range ml.Members {
		again := sc.UsedBy != "" && m.IsLearner && m.Name == "" && slices.Contains(m.PeerURLs, req.Member.PeerURL())
		switch {
		case again:
			// The answer to this key was lost: answer again.
			d.log.Info("pairing: answering a joiner again", "node", req.Member.Name)
			return d.answer(ctx, req, sc.Secret)
		case m.Name == req.Member.Name || slices.Contains(m.PeerURLs, req.Member.PeerURL()):
			return nil, &refusal{reason: "a member named " + req.Member.Name + " already exists"}
		case m.IsLearner:
			// etcd admits one learner at a time; the code stays unused.
			return nil, ErrBusy
		}
	}
	if sc.UsedBy != "" {
		return nil, &refusal{reason: "pairing code already used"}
	}
	// Mark the code used first: from here on no other key can use it.
	unused := gr.Kvs[0].Value
	if rev, err = d.useCode(ctx, ck, rev, sc, req.PublicKey); err != nil {
		return nil, err
	}
	resp, err := d.admit(ctx, req, sc.Secret)
	if err != nil {
		d.log.Info("pairing: nothing joined, code restored", "node", req.Member.Name, "err", err)
		d.restoreCode(context.WithoutCancel(ctx), ck, rev, unused)
	}
	return resp, err
}

// useCode marks the code used for publicKey if it did not change since
// rev, and returns the new revision.
func (d *Daemon) useCode(ctx context.Context, ck string, rev int64, sc storedCode, publicKey string) (int64, error) {
	sc.UsedBy = keyHash(publicKey)
	b, _ := json.Marshal(sc)
	tr, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev)).Then(clientv3.OpPut(ck, string(b))).Commit()
	if err != nil {
		return 0, fmt.Errorf("mark the pairing code used: %w", err)
	}
	if !tr.Succeeded {
		return 0, &refusal{reason: "pairing code already used"}
	}
	return tr.Header.Revision, nil
}

// codeFailed counts a wrong try of a code and deletes the code at
// maxCodeFailures. A lost race with another try is not retried: that try
// counted.
func (d *Daemon) codeFailed(ctx context.Context, ck string, rev int64, sc storedCode) {
	sc.Failures++
	op := clientv3.OpDelete(ck)
	if sc.Failures < maxCodeFailures {
		b, _ := json.Marshal(sc)
		op = clientv3.OpPut(ck, string(b))
	} else {
		d.log.Warn("pairing: code deleted after too many wrong tries", "id", strings.TrimPrefix(ck, prefixPairing), "name", sc.Name)
	}
	if _, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev)).Then(op).Commit(); err != nil {
		d.log.Warn("pairing: count a wrong try", "err", err)
	}
}

// restoreCode makes a used code unused again after a join that added
// nothing. The write is retried: it comes when etcd is busiest (a member
// just joined and leadership moves to the arbitrator), and one restore
// that timed out once, unchecked, locked the joiner out for good. Only
// the code as useCode left it is written back, so a retry changes
// nothing; after a crash between the two the code stays used, and the
// administrator makes a new one.
func (d *Daemon) restoreCode(ctx context.Context, ck string, rev int64, unused []byte) {
	err := d.retryEtcd(ctx, 10, "pairing: restore the code", func(c context.Context) error {
		_, err := d.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev)).Then(clientv3.OpPut(ck, string(unused))).Commit()
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

// admit adds the joiner as a learner and registers it; if a later step
// fails, the learner is removed again.
func (d *Daemon) admit(ctx context.Context, req pairRequest, secret string) (*pairResponse, error) {
	ar, err := d.cli.MemberAddAsLearner(ctx, []string{req.Member.PeerURL()})
	if errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrTooManyLearners) {
		return nil, ErrBusy // a member that just joined is not settled yet
	}
	if err != nil {
		return nil, fmt.Errorf("add member %s: %w", req.Member.Name, err)
	}
	mj, _ := json.Marshal(req.Member)
	resp, err := d.answer(ctx, req, secret)
	if err == nil {
		_, err = d.cli.Put(ctx, prefixNodes+req.Member.Name, string(mj))
	}
	if err != nil {
		if _, rerr := d.cli.MemberRemove(context.WithoutCancel(ctx), ar.Member.ID); rerr != nil {
			d.log.Error("pairing: remove half-added member", "node", req.Member.Name, "err", rerr)
		}
		return nil, fmt.Errorf("register member %s: %w", req.Member.Name, err)
	}
	resp.Members = append(resp.Members, req.Member)
	resp.MAC = ""
	resp.MAC = mac(secret, resp)
	return resp, nil
}

// answer signs the joiner's certificate and builds the answer.
func (d *Daemon) answer(ctx context.Context, req pairRequest, secret string) (*pairResponse, error) {
	pub, err := ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		return nil, &refusal{reason: "bad public key: " + err.Error()}
	}
	spec := CertSpec{Name: req.Member.Name, Role: req.Member.Role}
	if spec.Role != AdminRole && spec.Role != MonitorRole {
		spec.Role, spec.Addr = CertNode, net.ParseIP(req.Member.Address)
	}
	crt, err := d.issue(ctx, spec, pub)
	if err != nil {
		return nil, err
	}
	caCert, err := d.st.Read("ca.crt")
	if err != nil {
		return nil, err
	}
	crl, err := d.st.Read("crl.der")
	if err != nil {
		return nil, err
	}
	members, err := d.members(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pairResponse{Cluster: d.cf.Cluster, CACert: string(caCert), Cert: string(crt), CRL: crl, Members: members, Nonce: req.Nonce}
	resp.MAC = mac(secret, resp)
	return resp, nil
}

// issued is a certificate's entry in etcd (prefixCerts + serial), for
// revocation by name.
type issued struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	NotAfter time.Time `json:"not_after"`
}

// issue signs a certificate with the cluster CA and records it in etcd.
func (d *Daemon) issue(ctx context.Context, spec CertSpec, pub crypto.PublicKey) ([]byte, error) {
	caCert, err := d.st.Read("ca.crt")
	if err != nil {
		return nil, err
	}
	caKey, err := d.st.Read("ca.key")
	if err != nil {
		return nil, fmt.Errorf("this member has no CA key yet (it fetches it from another member after joining): %w", err)
	}
	crt, err := Issue(caCert, caKey, spec, pub)
	if err != nil {
		return nil, err
	}
	if err := d.register(ctx, crt); err != nil {
		return nil, err
	}
	return crt, nil
}

// register records a certificate in etcd.
func (d *Daemon) register(ctx context.Context, crt []byte) error {
	c, err := ParseCert(crt)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(issued{Name: c.Subject.CommonName, Role: CertRole(c), NotAfter: c.NotAfter})
	if _, err := d.cli.Put(ctx, prefixCerts+serialHex(c.SerialNumber), string(b)); err != nil {
		return fmt.Errorf("record certificate: %w", err)
	}
	return nil
}

// admitClient marks the code used and signs an administrator's or
// monitor's certificate; nothing joins etcd. A try again with the same
// key gets a certificate again.
func (d *Daemon) admitClient(ctx context.Context, req pairRequest, ck string, rev int64, sc storedCode) (*pairResponse, error) {
	if sc.UsedBy == "" {
		if _, err := d.useCode(ctx, ck, rev, sc, req.PublicKey); err != nil {
			return nil, err
		}
	}
	return d.answer(ctx, req, sc.Secret)
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

// MintCode stores a new one-time code for name as role ("" for a
// planned member's own role) in etcd and returns it.
func (d *Daemon) MintCode(ctx context.Context, name, role string, ttl time.Duration) (string, error) {
	role, err := bindCode(d.cfg, name, role)
	if err != nil {
		return "", &refusal{reason: err.Error()}
	}
	if role != AdminRole && role != MonitorRole {
		ms, err := d.members(ctx)
		if err != nil {
			return "", err
		}
		for _, m := range ms {
			if m.Name == name {
				return "", &refusal{reason: name + " is a member already (tandemctl cluster remove " + name + " first to replace it)"}
			}
		}
	}
	code, err := NewCode()
	if err != nil {
		return "", err
	}
	id, secret, _ := normalizeCode(code)
	b, _ := json.Marshal(storedCode{Secret: secret, Expires: time.Now().Add(ttl), Name: name, Role: role})
	ck := prefixPairing + id
	tr, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)).Then(clientv3.OpPut(ck, string(b))).Commit()
	if err != nil {
		return "", fmt.Errorf("store pairing code: %w", err)
	}
	if !tr.Succeeded {
		return "", errors.New("store pairing code: its id is taken; try again")
	}
	return code, nil
}
