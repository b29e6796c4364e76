package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	"tandem/internal/pkikey"
)

// The cluster CA signs every certificate of the cluster. A certificate's
// role is its subject's organizational unit (docs/security.md):
//
//	node     a member (data node or arbitrator): etcd peer and client,
//	         API server and client; CN is a name from cluster.nodes
//	admin    an administrator (tandemctl): API client only
//	monitor  read-only (status, metrics): API client only
//
// Only node certificates have server use, so no admin or monitor
// certificate can pose as a member; etcd takes only the CNs of
// cluster.nodes, and no admin or monitor certificate is ever issued for
// one of those names. Keys are ECDSA P-256.

// Certificate roles.
const (
	CertNode    = "node"
	CertAdmin   = "admin"
	CertMonitor = "monitor"
)

// Certificate lifetimes. A node renews its own certificate once less than
// a third of its lifetime is left (renewLoop); an administrator or
// monitor pairs again for a new one.
const (
	CALifetime     = 20 * 365 * 24 * time.Hour
	NodeLifetime   = 90 * 24 * time.Hour
	ClientLifetime = 365 * 24 * time.Hour
)

// NewKey returns a fresh private key and its PEM.
func NewKey() (*ecdsa.PrivateKey, []byte, error) { return pkikey.New() }

func serial() (*big.Int, error) { return pkikey.Serial() }

// NewCA creates the cluster CA: certificate PEM and key PEM.
func NewCA(cluster string) (certPEM, keyPEM []byte, err error) {
	k, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "tandem cluster CA " + cluster, Organization: []string{"tandem"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertSpec is what a certificate is for.
type CertSpec struct {
	Name string // CN: a member's or a person's name
	Role string // CertNode, CertAdmin or CertMonitor
	// Addr is a node's address (node certificates only, with loopback).
	Addr net.IP
}

// Issue signs a certificate for pub as spec says and returns its PEM.
func Issue(caCertPEM, caKeyPEM []byte, spec CertSpec, pub crypto.PublicKey) ([]byte, error) {
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: spec.Name, Organization: []string{"tandem"}, OrganizationalUnit: []string{spec.Role}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ClientLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	switch spec.Role {
	case CertNode:
		if spec.Addr == nil {
			return nil, fmt.Errorf("issue certificate for node %s: no address", spec.Name)
		}
		tmpl.NotAfter = now.Add(NodeLifetime)
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = []string{spec.Name, "localhost"}
		tmpl.IPAddresses = []net.IP{spec.Addr, net.IPv4(127, 0, 0, 1)}
	case CertAdmin, CertMonitor:
	default:
		return nil, fmt.Errorf("issue certificate for %s: unknown role %q", spec.Name, spec.Role)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", spec.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// CertRole is the role a verified certificate carries, "" for none.
func CertRole(c *x509.Certificate) string {
	if len(c.Subject.OrganizationalUnit) != 1 {
		return ""
	}
	switch r := c.Subject.OrganizationalUnit[0]; r {
	case CertNode, CertAdmin, CertMonitor:
		return r
	}
	return ""
}

// ParseCert reads the first certificate of a PEM.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	ca, err := ParseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("parse CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("parse CA key: not a signing key")
	}
	return ca, s, nil
}

// NewCRL signs a revocation list of serials with the CA and returns its
// DER, the form etcd reads from its CRLFile at every connection it
// accepts; the API checks the same serials (Daemon.verifyConn).
func NewCRL(caCertPEM, caKeyPEM []byte, serials []*big.Int) ([]byte, error) {
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Hour),
		NextUpdate: now.Add(CALifetime),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign revocation list: %w", err)
	}
	return der, nil
}

// crlSerials reads the serials of a CRL (DER) after checking the CA
// signed it.
func crlSerials(caCertPEM, crl []byte) (map[string]bool, error) {
	ca, err := ParseCert(caCertPEM)
	if err != nil {
		return nil, err
	}
	l, err := x509.ParseRevocationList(crl)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	if err := l.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	out := map[string]bool{}
	for _, e := range l.RevokedCertificateEntries {
		out[serialHex(e.SerialNumber)] = true
	}
	return out, nil
}

func serialHex(s *big.Int) string { return s.Text(16) }

// ParsePublicKey reads a PEM "PUBLIC KEY".
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("public key: no PEM block")
	}
	return x509.ParsePKIXPublicKey(blk.Bytes)
}

// PublicKeyPEM encodes a public key.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// TLSConfigs builds the server and client TLS configurations of a state
// directory: both present its certificate (read again at every handshake,
// so a renewed one takes effect without a restart) and trust only the CA.
// The server asks for a client certificate (the pairing endpoint works
// without); the client accepts only a node certificate from the server.
func TLSConfigs(caPEM []byte, pair func() (*tls.Certificate, error)) (server, client *tls.Config, err error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("tls: no CA certificate")
	}
	if _, err := pair(); err != nil {
		return nil, nil, err
	}
	server = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair() },
		ClientCAs:      pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	}
	client = &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair() },
		RootCAs:              pool, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || CertRole(cs.PeerCertificates[0]) != CertNode {
				return errors.New("tls: the server's certificate is not a cluster node's")
			}
			return nil
		},
	}
	return server, client, nil
}

// hasRole reports whether c's role is one of roles.
func hasRole(c *x509.Certificate, roles ...string) bool {
	r := CertRole(c)
	return r != "" && slices.Contains(roles, r)
}
