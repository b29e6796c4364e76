package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The API: HTTPS on api_port (node address and loopback). Every endpoint
// but /v1/pair requires a client certificate of the cluster CA that is
// not revoked, and each allows only some roles (docs/security.md):
//
//	GET  /v1/status                      Status                        monitor admin node
//	POST /v1/node/standby   {"node"}     node may not run the group    admin
//	POST /v1/node/online    {"node"}     undo standby                  admin
//	POST /v1/resource/move  {"node"}     planned move of the group     admin
//	POST /v1/resource/cleanup {"node","resource"}  reset fail counts   admin
//	POST /v1/maintenance    {"on"}       stop managing resources       admin
//	POST /v1/pairing/code   {"name","role"}  a one-time pairing code   admin
//	POST /v1/cluster/revoke {"serial"|"name"}  revoke certificates     admin
//	POST /v1/cluster/remove {"node"}     remove a member               admin
//	POST /v1/fence/test/NODE             check NODE's fence device now admin
//	GET  /v1/ca/key                      the CA key, for members       node
//	POST /v1/pair                        pairing (authenticated by the code)
//	/v1/replication...                   see api_replication.go

// Request is the body of the POST endpoints.
type Request struct {
	Node     string `json:"node,omitempty"`
	Resource string `json:"resource,omitempty"`
	On       bool   `json:"on,omitempty"`
	// Name and Role: a pairing code's binding; Name or Serial: what to
	// revoke.
	Name   string `json:"name,omitempty"`
	Role   string `json:"role,omitempty"`
	Serial string `json:"serial,omitempty"`
}

type apiError struct {
	Error string `json:"error"`
}

// The API server's limits: a client that sends its request slowly, or
// holds connections open, is cut off (RFC 9110 leaves it to the server).
const (
	apiHeaderTimeout     = 5 * time.Second
	apiReadTimeout       = 15 * time.Second
	apiWriteTimeout      = 60 * time.Second
	apiIdleTimeout       = 2 * time.Minute
	apiMaxConns          = 64
	apiMaxConnsPerSource = 16
	apiMaxHeader         = 64 << 10
	apiMaxBody           = 1 << 20
)

// Role sets of the endpoints.
var (
	readers = []string{CertMonitor, CertAdmin, CertNode}
	admins  = []string{CertAdmin}
	nodes   = []string{CertNode}
)

func (d *Daemon) serveAPI() error {
	srvTLS, _, err := d.st.TLS()
	if err != nil {
		return err
	}
	srvTLS.VerifyConnection = d.verifyConn
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/pair", d.handlePair)
	mux.Handle("GET /v1/status", d.auth(readers, func(w http.ResponseWriter, r *http.Request) {
		s := d.status()
		s.Memory = readMemory("/proc/meminfo")
		c, cancel := context.WithTimeout(r.Context(), d.cfg.requestTimeout())
		if mc, err := d.mailCertStatus(c); err == nil && mc != nil {
			mc.CA = nil
			s.MailCert = mc
		}
		if fc, err := d.fenceChecks(c); err == nil {
			s.Fence = fc
		}
		cancel()
		writeJSON(w, 200, s)
	}))
	mux.Handle("POST /v1/node/standby", d.auth(admins, d.handleNode(true)))
	mux.Handle("POST /v1/node/online", d.auth(admins, d.handleNode(false)))
	mux.Handle("POST /v1/resource/move", d.auth(admins, d.handleMove))
	mux.Handle("POST /v1/resource/cleanup", d.auth(admins, d.handleCleanup))
	mux.Handle("POST /v1/maintenance", d.auth(admins, d.handleMaintenance))
	mux.Handle("POST /v1/pairing/code", d.auth(admins, d.handleCode))
	mux.Handle("POST /v1/cluster/revoke", d.auth(admins, d.handleRevoke))
	mux.Handle("POST /v1/cluster/remove", d.auth(admins, d.handleRemove))
	mux.Handle("POST /v1/fence/test/{node}", d.auth(admins, d.handleFenceTest))
	mux.Handle("GET /v1/ca/key", d.auth(nodes, d.handleCAKey))
	d.mailRoutes(mux)
	d.replicationRoutes(mux)
	d.api = newAPIServer(mux, srvTLS)
	// Failed handshakes (a revoked certificate, a scanner) are the
	// server's to log, not stderr's.
	d.api.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
	for _, host := range []string{d.cfg.Address, "127.0.0.1"} {
		ln, err := net.Listen("tcp", hostPort(host, d.cfg.APIPort))
		if err != nil {
			return fmt.Errorf("api listen: %w", err)
		}
		go func() {
			if err := d.api.Serve(tls.NewListener(newCapListener(ln, apiMaxConns, apiMaxConnsPerSource), srvTLS)); !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("api", "listen", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// newAPIServer is the API's HTTP server with its limits.
func newAPIServer(h http.Handler, tc *tls.Config) *http.Server {
	return &http.Server{Handler: h, TLSConfig: tc,
		ReadHeaderTimeout: apiHeaderTimeout, ReadTimeout: apiReadTimeout, WriteTimeout: apiWriteTimeout,
		IdleTimeout: apiIdleTimeout, MaxHeaderBytes: apiMaxHeader}
}

// verifyConn refuses a revoked client certificate at the handshake.
func (d *Daemon) verifyConn(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // pairing; every other endpoint asks auth
	}
	if d.isRevoked(cs.PeerCertificates[0]) {
		return fmt.Errorf("certificate %s of %s is revoked", serialHex(cs.PeerCertificates[0].SerialNumber), cs.PeerCertificates[0].Subject.CommonName)
	}
	return nil
}

// auth admits a verified client certificate of one of roles.
func (d *Daemon) auth(roles []string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeJSON(w, http.StatusUnauthorized, apiError{"a client certificate of the cluster CA is required"})
			return
		}
		c := r.TLS.PeerCertificates[0]
		if !hasRole(c, roles...) {
			role := CertRole(c)
			if role == "" {
				role = "no role"
			}
			writeJSON(w, http.StatusForbidden, apiError{fmt.Sprintf("%s (%s) may not %s %s: it needs the role %s", c.Subject.CommonName, role, r.Method, r.URL.Path, strings.Join(roles, " or "))})
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nobody to tell
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, apiMaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"bad request body: " + err.Error()})
		return false
	}
	return true
}

// write runs an etcd change; without quorum it answers 503.
func (d *Daemon) write(w http.ResponseWriter, r *http.Request, what string, ops ...clientv3.Op) {
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if _, err := d.cli.Txn(c).Then(ops...).Commit(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("%s: cluster state not writable (no quorum?): %v", what, err)})
		return
	}
	d.log.Info("api", "change", what, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSON(w, 200, map[string]string{"ok": what})
}

// node looks a node up in the registered members.
func (d *Daemon) node(ctx context.Context, name string, wantData bool) error {
	ms, err := d.members(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name == name {
			if wantData && m.Role != "data" {
				return fmt.Errorf("node %s is an arbitrator: it never runs resources", name)
			}
			return nil
		}
	}
	return fmt.Errorf("no node named %q in the cluster", name)
}

func (d *Daemon) checkNode(w http.ResponseWriter, r *http.Request, name string, wantData bool) bool {
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := d.node(c, name, wantData); err != nil {
		code := http.StatusBadRequest
		if !strings.Contains(err.Error(), "node") {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, apiError{err.Error()})
		return false
	}
	return true
}

func (d *Daemon) handleNode(standby bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Request
		if !decode(w, r, &req) || !d.checkNode(w, r, req.Node, false) {
			return
		}
		if standby {
			d.write(w, r, "standby "+req.Node, clientv3.OpPut(prefixStandby+req.Node, "1"))
		} else {
			d.write(w, r, "online "+req.Node, clientv3.OpDelete(prefixStandby+req.Node))
		}
	}
}

func (d *Daemon) handleMove(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) || !d.checkNode(w, r, req.Node, true) {
		return
	}
	d.write(w, r, "move group to "+req.Node, clientv3.OpPut(keyMove, req.Node))
}

func (d *Daemon) handleCleanup(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) {
		return
	}
	if req.Node != "" && !d.checkNode(w, r, req.Node, true) {
		return
	}
	key, opts := prefixFail, []clientv3.OpOption{clientv3.WithPrefix()}
	switch {
	case req.Node != "" && req.Resource != "":
		key, opts = failKey(req.Node, req.Resource), nil
	case req.Node != "":
		key = prefixFail + req.Node + "/"
	}
	ops := []clientv3.Op{clientv3.OpDelete(key, opts...)}
	if req.Node == "" && req.Resource != "" {
		ops = nil
		c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		ms, err := d.members(c)
		cancel()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
			return
		}
		for _, m := range ms {
			ops = append(ops, clientv3.OpDelete(failKey(m.Name, req.Resource)))
		}
	}
	d.write(w, r, "cleanup "+strings.TrimSpace(req.Resource+" "+req.Node), ops...)
}

func (d *Daemon) handleMaintenance(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) {
		return
	}
	if req.On {
		d.write(w, r, "maintenance on", clientv3.OpPut(keyMaintenance, "1"))
	} else {
		d.write(w, r, "maintenance off", clientv3.OpDelete(keyMaintenance))
	}
}

func (d *Daemon) handleCode(w http.ResponseWriter, r *http.Request) {
	var req Request
	if !decode(w, r, &req) {
		return
	}
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	code, err := d.MintCode(c, req.Name, req.Role, CodeTTL)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		writeJSON(w, http.StatusBadRequest, apiError{"pairing code: " + ref.reason})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
		return
	}
	d.log.Info("pairing code made", "id", code[:4], "for", req.Name, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSON(w, 200, map[string]string{"code": code})
}

func (d *Daemon) handlePair(w http.ResponseWriter, r *http.Request) {
	src, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !d.pairLimit.allowed(src) {
		d.log.Warn("pairing refused: too many refused attempts", "from", src)
		http.Error(w, ErrTooManyAttempts.Error(), http.StatusTooManyRequests)
		return
	}
	var req pairRequest
	if !decode(w, r, &req) {
		d.pairLimit.failed(src)
		return
	}
	c, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	resp, err := d.pair(c, req)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		d.pairLimit.failed(src)
		d.log.Warn("pairing refused", "from", r.RemoteAddr, "node", req.Member.Name, "code_id", req.CodeID, "reason", ref.reason)
		http.Error(w, "pairing refused: "+ref.told(), http.StatusForbidden)
	case errors.Is(err, ErrBusy):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		d.log.Error("pairing failed", "from", r.RemoteAddr, "node", req.Member.Name, "err", err)
		http.Error(w, "pairing failed: "+err.Error(), http.StatusServiceUnavailable)
	default:
		d.log.Info("node paired", "node", req.Member.Name, "role", req.Member.Role, "from", r.RemoteAddr)
		writeJSON(w, 200, resp)
	}
}

// ErrUnreachable says the API could not be reached at all.
var ErrUnreachable = errors.New("cannot reach the cluster API")

// Client talks to a node's API with the node's certificate.
type Client struct {
	Endpoint string
	hc       *http.Client
}

// NewClient builds a client from a state directory's certificate.
func NewClient(st State, endpoint string) (*Client, error) {
	_, tlsc, err := st.TLS()
	if err != nil {
		return nil, err
	}
	return &Client{Endpoint: strings.TrimSuffix(endpoint, "/"),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsc}}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Endpoint+path, body)
	if err != nil {
		return err
	}
	r, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w (is tandem-cluster running there?)", ErrUnreachable, c.Endpoint, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if r.StatusCode != 200 {
		var e apiError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, r.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

// Do calls the API: in as the JSON body (nil: none), the answer into out
// (nil: dropped); an answer other than 200 is an error with its message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Post calls a POST endpoint.
func (c *Client) Post(ctx context.Context, path string, req Request) error {
	return c.do(ctx, http.MethodPost, path, req, nil)
}

// MailCert describes the mail service's certificate.
func (c *Client) MailCert(ctx context.Context) (*MailCert, error) {
	var mc MailCert
	return &mc, c.do(ctx, http.MethodGet, "/v1/mail/cert", nil, &mc)
}

// SetMailCert installs or issues the mail service's certificate.
func (c *Client) SetMailCert(ctx context.Context, req MailCertRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/mail/cert", req, nil)
}

// Code asks for a new pairing code for name as role ("": a planned
// member's own).
func (c *Client) Code(ctx context.Context, name, role string) (string, error) {
	var out map[string]string
	err := c.do(ctx, http.MethodPost, "/v1/pairing/code", Request{Name: name, Role: role}, &out)
	return out["code"], err
}

// ClientDefaults are the state directory and API endpoint a client on a
// node uses unless told otherwise: $TANDEM_STATE and $TANDEM_ENDPOINT,
// else this node's own.
func ClientDefaults() (stateDir, endpoint string) {
	stateDir, endpoint = os.Getenv("TANDEM_STATE"), os.Getenv("TANDEM_ENDPOINT")
	if stateDir == "" {
		stateDir = "/perm/tandem/cluster"
	}
	if endpoint == "" {
		endpoint = "https://127.0.0.1:" + strconv.Itoa(DefaultAPIPort)
	}
	return stateDir, endpoint
}
