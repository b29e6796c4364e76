package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The attacks of docs/security.md against one in-process member: the
// arbitrator "c" founds a cluster on loopback (no watchdog, no group),
// and the other planned nodes and clients pair with it through its API.
// The joining data nodes never start, so they stay learners.

// secCluster is the founder and the codes it was made with.
type secCluster struct {
	d        *Daemon
	st       State
	api      string
	etcdURL  string
	codes    map[string]string
	adminDir State
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startFounder(t *testing.T) *secCluster {
	t.Helper()
	dir := t.TempDir()
	peer, client, api := freePort(t), freePort(t), freePort(t)
	y := fmt.Sprintf(`cluster: sec
node: c
role: arbitrator
address: 127.0.0.5
peer_port: %d
client_port: %d
api_port: %d
learner_timeout: 10s
nodes:
  - {name: a, role: data, address: 127.0.0.2}
  - {name: b, role: data, address: 127.0.0.3}
  - {name: c, role: arbitrator, address: 127.0.0.5}
`, peer, client, api)
	cfg, err := LoadConfig(strings.NewReader(y), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := State{Dir: filepath.Join(dir, "c")}
	codes, err := Create(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("daemon log:\n%s", b)
		}
	})
	d, err := New(context.Background(), Options{Config: cfg, State: st, Log: slog.New(slog.NewTextHandler(f, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	s := &secCluster{d: d, st: st, api: fmt.Sprintf("https://127.0.0.1:%d", api), etcdURL: fmt.Sprintf("https://127.0.0.1:%d", client), codes: codes}
	deadline := time.Now().Add(2 * time.Minute)
	for !d.booted.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the founder did not bootstrap in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.adminDir = State{Dir: filepath.Join(dir, "admin")}
	if err := JoinClient(ctx, "sec", "admin", AdminRole, s.adminDir, s.api, codes["admin"]); err != nil {
		t.Fatalf("administrator's pairing: %v", err)
	}
	return s
}

// etcdGet reads a key through the founder's etcd client port with the
// certificate of st, each time on a new connection.
func (s *secCluster) etcdGet(st State) error {
	_, tc, err := st.TLS()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcdURL}, TLS: tc, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, prefixNodes, clientv3.WithPrefix())
	return err
}

// client is an API client of st's certificate that opens a new
// connection for every request (so every request is a handshake).
func (s *secCluster) client(t *testing.T, st State) *Client {
	t.Helper()
	c, err := NewClient(st, s.api)
	if err != nil {
		t.Fatal(err)
	}
	c.hc.Transport.(*http.Transport).DisableKeepAlives = true
	return c
}

// joinAs pairs a data node that never starts.
func (s *secCluster) joinAs(ctx context.Context, st State, name, addr, code string) error {
	return join(ctx, "sec", Member{Name: name, Role: "data", Address: addr, PeerPort: 2380, ClientPort: 2379, APIPort: 7443}, st, s.api, code)
}

func (s *secCluster) learners(t *testing.T) []string {
	t.Helper()
	ml, err := s.d.cli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ml.Members {
		if m.IsLearner {
			out = append(out, strings.Join(m.PeerURLs, ","))
		}
	}
	return out
}

func TestSecurity(t *testing.T) {
	s := startFounder(t)
	ctx := context.Background()
	dir := t.TempDir()
	monitor := State{Dir: filepath.Join(dir, "monitor")}

	t.Run("CA key is not in etcd", func(t *testing.T) {
		g, err := s.d.cli.Get(ctx, "", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range g.Kvs {
			if strings.Contains(string(kv.Value), "PRIVATE KEY") {
				t.Errorf("etcd key %s holds a private key", kv.Key)
			}
		}
	})

	t.Run("monitor code and roles", func(t *testing.T) {
		code, err := s.client(t, s.adminDir).Code(ctx, "nagios", MonitorRole)
		if err != nil {
			t.Fatal(err)
		}
		// An administrator's name on a monitor's code: refused, and the
		// code still works for its own name.
		if err := JoinClient(ctx, "sec", "nagios", AdminRole, State{Dir: filepath.Join(dir, "x")}, s.api, code); !errors.Is(err, ErrPairingRefused) || !strings.Contains(err.Error(), "the code is for nagios (monitor), not nagios (admin)") {
			t.Errorf("a monitor's code used for an administrator: %v, want refused", err)
		}
		if err := JoinClient(ctx, "sec", "nagios", MonitorRole, monitor, s.api, code); err != nil {
			t.Fatal(err)
		}
		mon := s.client(t, monitor)
		if _, err := mon.Status(ctx); err != nil {
			t.Errorf("monitor reads status: %v", err)
		}
		if err := mon.Post(ctx, "/v1/maintenance", Request{On: true}); err == nil || !strings.Contains(err.Error(), "nagios (monitor) may not POST /v1/maintenance") {
			t.Errorf("monitor turns maintenance on: %v, want refused", err)
		}
		if err := mon.Do(ctx, http.MethodPost, "/v1/fence/test/a", struct{}{}, nil); err == nil || !strings.Contains(err.Error(), "nagios (monitor) may not POST /v1/fence/test/a") {
			t.Errorf("monitor tests a fence device: %v, want refused", err)
		}
		if _, err := mon.Code(ctx, "x", AdminRole); err == nil {
			t.Error("a monitor made a pairing code")
		}
		node := s.client(t, s.st)
		if err := node.Post(ctx, "/v1/resource/move", Request{Node: "a"}); err == nil || !strings.Contains(err.Error(), "c (node) may not") {
			t.Errorf("a node's certificate moves the group: %v, want refused", err)
		}
		if _, err := s.client(t, s.adminDir).Code(ctx, "c", ""); err == nil || !strings.Contains(err.Error(), "c is this node") {
			t.Errorf("code for the serving node: %v, want refused", err)
		}
		if _, err := s.client(t, s.adminDir).Code(ctx, "a", AdminRole); err == nil || !strings.Contains(err.Error(), "a is a member of the cluster") {
			t.Errorf("administrator's code with a member's name: %v, want refused", err)
		}
	})

	t.Run("etcd takes only members", func(t *testing.T) {
		if err := s.etcdGet(s.st); err != nil {
			t.Fatalf("the member's own certificate: %v", err)
		}
		for _, st := range []State{s.adminDir, monitor} {
			if err := s.etcdGet(st); err == nil {
				t.Errorf("etcd answered the certificate of %s", st.Dir)
			}
		}
	})

	t.Run("join refused for the wrong name leaves nothing", func(t *testing.T) {
		st := State{Dir: filepath.Join(dir, "b-as-a")}
		err := s.joinAs(ctx, st, "b", "127.0.0.3", s.codes["a"])
		if !errors.Is(err, ErrPairingRefused) || !strings.Contains(err.Error(), "the code is for a (data), not b (data)") {
			t.Fatalf("b with a's code: %v, want refused", err)
		}
		if st.Paired() {
			t.Error("a refused join left cluster.json")
		}
		if l := s.learners(t); len(l) > 0 {
			t.Errorf("a refused join left learners %v", l)
		}
		if issued, _ := s.d.certsOf(ctx, "b", ""); len(issued) > 0 {
			t.Errorf("a refused join got certificates %v", issued)
		}
		err = join(ctx, "sec", Member{Name: "a", Role: "bogus-role", Address: "127.0.0.2", PeerPort: 2380}, st, s.api, s.codes["a"])
		if !errors.Is(err, ErrPairingRefused) {
			t.Errorf("a with role bogus-role: %v, want refused", err)
		}
	})

	stA := State{Dir: filepath.Join(dir, "a")}
	t.Run("answer lost: the same key gets it again, another key does not", func(t *testing.T) {
		if err := s.joinAs(ctx, stA, "a", "127.0.0.2", s.codes["a"]); err != nil {
			t.Fatalf("a joins: %v", err)
		}
		if err := s.etcdGet(stA); err != nil {
			t.Errorf("etcd refuses the new member a: %v", err)
		}
		again := State{Dir: filepath.Join(dir, "a-again")}
		key, _ := stA.Read("node.key")
		if err := again.Write("pending.key", key); err != nil {
			t.Fatal(err)
		}
		if err := s.joinAs(ctx, again, "a", "127.0.0.2", s.codes["a"]); err != nil {
			t.Errorf("a asks again with its key: %v", err)
		}
		other := State{Dir: filepath.Join(dir, "a-other")}
		if err := s.joinAs(ctx, other, "a", "127.0.0.2", s.codes["a"]); !errors.Is(err, ErrPairingRefused) || !strings.Contains(err.Error(), "already used") {
			t.Errorf("a's used code with another key: %v, want refused as used", err)
		}
		if l := s.learners(t); len(l) != 1 {
			t.Errorf("learners %v, want a's one", l)
		}
	})

	t.Run("CA key only for members", func(t *testing.T) {
		key, err := s.d.getCAKey(ctx, s.api)
		if err != nil {
			t.Fatalf("the founder's own certificate: %v", err)
		}
		caCrt, _ := s.st.Read("ca.crt")
		ca, _ := ParseCert(caCrt)
		if err := matchesCert(key, ca); err != nil {
			t.Error(err)
		}
		admin := s.client(t, s.adminDir)
		r, err := http.NewRequest(http.MethodGet, s.api+"/v1/ca/key", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := admin.hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("administrator asks for the CA key: %s, want 403", resp.Status)
		}
	})

	t.Run("a learner that never starts is removed", func(t *testing.T) {
		stB := State{Dir: filepath.Join(dir, "b")}
		// a holds etcd's learner place and never starts: b waits
		// (ErrBusy, retried) until a is removed after learner_timeout.
		var err error
		for range 4 {
			if err = s.joinAs(ctx, stB, "b", "127.0.0.3", s.codes["b"]); !errors.Is(err, ErrBusy) {
				break
			}
		}
		if err != nil {
			t.Fatalf("b joins after a's learner timeout: %v", err)
		}
		if !strings.Contains(readLog(t, s), "removed a learner that never started") {
			t.Error("the founder's log does not say it removed a's learner")
		}
		ms, _ := s.d.members(ctx)
		for _, m := range ms {
			if m.Name == "a" {
				t.Error("a is still registered after its learner was removed")
			}
		}
	})

	t.Run("remove a member", func(t *testing.T) {
		admin := s.client(t, s.adminDir)
		if err := admin.Post(ctx, "/v1/cluster/remove", Request{Node: "c"}); err == nil || !strings.Contains(err.Error(), "ask another member") {
			t.Errorf("remove the serving node: %v, want refused", err)
		}
		if err := admin.Post(ctx, "/v1/cluster/remove", Request{Node: "b"}); err != nil {
			t.Fatalf("remove b: %v", err)
		}
		if l := s.learners(t); len(l) != 0 {
			t.Errorf("learners after removing b: %v", l)
		}
		if err := s.etcdGet(State{Dir: filepath.Join(dir, "b")}); err == nil {
			t.Error("etcd still answers the removed member b's certificate")
		}
	})

	t.Run("revoked certificates", func(t *testing.T) {
		second := State{Dir: filepath.Join(dir, "admin2")}
		code, err := s.client(t, s.adminDir).Code(ctx, "ops", AdminRole)
		if err != nil {
			t.Fatal(err)
		}
		if err := JoinClient(ctx, "sec", "ops", AdminRole, second, s.api, code); err != nil {
			t.Fatal(err)
		}
		ops := s.client(t, second)
		if _, err := ops.Status(ctx); err != nil {
			t.Fatalf("ops before revocation: %v", err)
		}
		if err := s.client(t, s.adminDir).Post(ctx, "/v1/cluster/revoke", Request{Name: "ops"}); err != nil {
			t.Fatal(err)
		}
		if _, err := ops.Status(ctx); err == nil {
			t.Error("a revoked administrator's certificate still reads status")
		}
		if _, err := s.client(t, s.adminDir).Status(ctx); err != nil {
			t.Errorf("the other administrator after the revocation: %v", err)
		}
		crt, _ := monitor.Read("node.crt")
		c, _ := ParseCert(crt)
		if err := s.client(t, s.adminDir).Post(ctx, "/v1/cluster/revoke", Request{Serial: strings.ToUpper(serialHex(c.SerialNumber))}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.client(t, monitor).Status(ctx); err == nil {
			t.Error("a revoked monitor's certificate still reads status")
		}
		if err := s.client(t, s.adminDir).Post(ctx, "/v1/cluster/revoke", Request{Name: "nobody"}); err == nil || !strings.Contains(err.Error(), "no certificate issued to nobody") {
			t.Errorf("revoke an unknown name: %v", err)
		}
	})

	t.Run("a code dies after wrong tries", func(t *testing.T) {
		s.d.pairLimit = newSourceLimiter(maxSourceFailures, sourceWindow)
		code, err := s.client(t, s.adminDir).Code(ctx, "a", "")
		if err != nil {
			t.Fatal(err)
		}
		wrong := code[:5] + strings.Repeat("Z", 4) + code[9:]
		if wrong == code {
			wrong = code[:5] + strings.Repeat("Y", 4) + code[9:]
		}
		var first string
		for i := range maxCodeFailures {
			err := s.joinAs(ctx, State{Dir: filepath.Join(dir, "guess")}, "a", "127.0.0.2", wrong)
			if !errors.Is(err, ErrPairingRefused) {
				t.Fatalf("wrong try %d: %v", i, err)
			}
			first = err.Error()
		}
		unknown := s.joinAs(ctx, State{Dir: filepath.Join(dir, "guess")}, "a", "127.0.0.2", "ZZZZ-ZZZZ-ZZZZ-ZZZZ")
		if unknown == nil || unknown.Error() != first {
			t.Errorf("refusal of an unknown code id %q differs from a wrong code's %q", unknown, first)
		}
		err = s.joinAs(ctx, State{Dir: filepath.Join(dir, "a3")}, "a", "127.0.0.2", code)
		if !errors.Is(err, ErrPairingRefused) {
			t.Errorf("the right code after %d wrong tries: %v, want refused (the code is dead)", maxCodeFailures, err)
		}
	})

	t.Run("brute force from one address is stopped", func(t *testing.T) {
		s.d.pairLimit = newSourceLimiter(maxSourceFailures, sourceWindow)
		refused, stopped := 0, 0
		for i := range 300 {
			guess, err := NewCode()
			if err != nil {
				t.Fatal(err)
			}
			err = s.joinAs(ctx, State{Dir: filepath.Join(dir, "guess")}, "a", "127.0.0.2", guess)
			switch {
			case errors.Is(err, ErrTooManyAttempts):
				stopped++
			case errors.Is(err, ErrPairingRefused):
				refused++
			default:
				t.Fatalf("try %d: %v", i, err)
			}
		}
		if refused != maxSourceFailures || stopped != 300-maxSourceFailures {
			t.Errorf("300 wrong codes: %d refused, %d turned away; want %d refused", refused, stopped, maxSourceFailures)
		}
	})

	t.Run("a slow body is cut off", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.api, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		fmt.Fprintf(conn, "POST /v1/pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		if err := conn.SetReadDeadline(time.Now().Add(4 * apiReadTimeout)); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(bufio.NewReader(conn))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server still holds a connection whose body never came after %v", 4*apiReadTimeout)
		}
	})
}

func readLog(t *testing.T, s *secCluster) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.st.Dir), "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
