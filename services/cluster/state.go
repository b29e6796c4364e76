package cluster

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"tandem/internal/atomicfile"
)

// State is a node's cluster state directory (on perm):
//
//	ca.crt          cluster CA certificate
//	ca.key          CA key (0600; on every member, never in etcd)
//	node.crt        this node's certificate, signed by the CA
//	node.key        its key (0600)
//	crl.der         the revoked certificates (etcd and the API check it)
//	cluster.json    cluster name, members, bootstrap state
//	pairing-codes   codes made by "cluster create", moved into etcd at start
//	etcd/           etcd's data
//	status.json     the daemon's last status (for observers)
type State struct{ Dir string }

// ErrNotPaired says the directory holds no cluster yet.
var ErrNotPaired = errors.New("node is not part of a cluster (run tandemctl cluster create or join)")

// ErrAlreadyPaired says the directory already holds a cluster.
var ErrAlreadyPaired = errors.New("node is already part of a cluster")

// Member is one cluster member as stored in cluster.json and etcd.
type Member struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	Address    string `json:"address"`
	PeerPort   int    `json:"peer_port"`
	ClientPort int    `json:"client_port"`
	APIPort    int    `json:"api_port"`
}

// PeerURL is the member's etcd peer URL.
func (m Member) PeerURL() string { return "https://" + hostPort(m.Address, m.PeerPort) }

// ClientURL is the member's etcd client URL.
func (m Member) ClientURL() string { return "https://" + hostPort(m.Address, m.ClientPort) }

// APIURL is the member's API URL.
func (m Member) APIURL() string { return "https://" + hostPort(m.Address, m.APIPort) }

func hostPort(a string, p int) string { return a + ":" + strconv.Itoa(p) }

// MemberOf describes the node a config is for.
func MemberOf(c *Config) Member {
	return Member{Name: c.Node, Role: string(c.Role), Address: c.Address, PeerPort: c.PeerPort, ClientPort: c.ClientPort, APIPort: c.APIPort}
}

// ClusterFile is cluster.json.
type ClusterFile struct {
	Cluster string `json:"cluster"`
	// Bootstrap is "new" on the creating node, "existing" on joiners;
	// it matters only until etcd's data directory exists.
	Bootstrap string   `json:"bootstrap"`
	Members   []Member `json:"members"`
}

// InitialCluster renders etcd's --initial-cluster.
func (f *ClusterFile) InitialCluster() string {
	var parts []string
	for _, m := range f.Members {
		parts = append(parts, m.Name+"="+m.PeerURL())
	}
	return strings.Join(parts, ",")
}

// Path returns a file of the state directory.
func (s State) Path(name string) string { return filepath.Join(s.Dir, name) }

// Read reads a file of the state directory.
func (s State) Read(name string) ([]byte, error) {
	b, err := os.ReadFile(s.Path(name))
	if errors.Is(err, os.ErrNotExist) && name == "cluster.json" {
		return nil, fmt.Errorf("%s: %w", s.Dir, ErrNotPaired)
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", name, err)
	}
	return b, nil
}

// Write writes a file atomically; keys and codes are 0600.
func (s State) Write(name string, b []byte) error {
	perm := os.FileMode(0o644)
	if strings.HasSuffix(name, ".key") || name == "pairing-codes" {
		perm = 0o600
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", s.Dir, err)
	}
	if err := atomicfile.Write(s.Path(name), b, perm); err != nil {
		return fmt.Errorf("state %s: %w", name, err)
	}
	return nil
}

// Cluster reads cluster.json.
func (s State) Cluster() (*ClusterFile, error) {
	b, err := s.Read("cluster.json")
	if err != nil {
		return nil, err
	}
	var f ClusterFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("state %s: %w", s.Path("cluster.json"), err)
	}
	return &f, nil
}

// Paired reports whether cluster.json exists.
func (s State) Paired() bool {
	_, err := os.Stat(s.Path("cluster.json"))
	return err == nil
}

// TLS returns the server and client TLS configurations of the
// directory's certificate (TLSConfigs).
func (s State) TLS() (server, client *tls.Config, err error) {
	ca, err := s.Read("ca.crt")
	if err != nil {
		return nil, nil, err
	}
	return TLSConfigs(ca, s.keyPair)
}

// keyPair reads the certificate and its key.
func (s State) keyPair() (*tls.Certificate, error) {
	crt, err := s.Read("node.crt")
	if err != nil {
		return nil, err
	}
	key, err := s.Read("node.key")
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("state %s: key pair: %w", s.Dir, err)
	}
	return &pair, nil
}
