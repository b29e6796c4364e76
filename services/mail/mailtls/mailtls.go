// Package mailtls makes and checks the mail service's TLS certificate:
// the one Postfix and Dovecot present to mail clients and other servers.
//
// It has its own CA, never the cluster's internal one: that CA's
// certificates open the cluster's API and etcd, and a mail client told to
// trust the mail CA must not thereby trust a node's or an administrator's
// certificate. The admin may instead install a certificate from a public
// CA (Check validates it).
package mailtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tandem/internal/pkikey"
)

// Lifetimes. The cluster renews a certificate of its own mail CA once
// less than a third of Lifetime is left; 397 days is the longest clients
// accept of a publicly trusted certificate, and some apply it to every
// one.
const (
	CALifetime = 20 * 365 * 24 * time.Hour
	Lifetime   = 397 * 24 * time.Hour
)

// Pair is a service certificate: the chain (leaf first, then the
// intermediates and optionally the root), and the leaf's private key,
// both PEM.
type Pair struct {
	Chain []byte `json:"chain"`
	Key   []byte `json:"key"`
}

// Info describes a certificate for people: what tandemctl prints.
type Info struct {
	Subject   string    `json:"subject"`
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// SHA256 is the leaf's fingerprint, hex in pairs (AB:CD:...), as
	// openssl x509 -fingerprint -sha256 prints it.
	SHA256 string `json:"sha256"`
	// Chain is how many certificates the chain holds, the leaf included.
	Chain int `json:"chain"`
}

// Due reports whether a certificate of the cluster's mail CA should be
// renewed at now: less than a third of its lifetime left.
func (i Info) Due(now time.Time) bool {
	return i.NotAfter.Sub(now) < i.NotAfter.Sub(i.NotBefore)/3
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, pemKey, err := pkikey.New()
	if err != nil {
		return nil, nil, fmt.Errorf("mailtls: %w", err)
	}
	return k, pemKey, nil
}

// NewCA makes a mail CA for cluster: its certificate and key, PEM.
func NewCA(cluster string) (certPEM, keyPEM []byte, err error) {
	k, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := pkikey.Serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "tandem mail CA " + cluster, Organization: []string{"tandem"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, fmt.Errorf("mailtls: create CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Issue makes a server certificate for names (the first is its subject)
// signed by the mail CA; the chain holds the leaf and the CA.
func Issue(caCertPEM, caKeyPEM []byte, names []string) (Pair, error) {
	if len(names) == 0 {
		return Pair{}, errors.New("mailtls: no names to issue a certificate for")
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return Pair{}, err
	}
	k, keyPEM, err := newKey()
	if err != nil {
		return Pair{}, err
	}
	sn, err := pkikey.Serial()
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"tandem"}},
		DNSNames:     slices.Clone(names),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("mailtls: issue: %w", err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caCertPEM...)
	return Pair{Chain: chain, Key: keyPEM}, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	certs, err := parseChain(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("mailtls: CA: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("mailtls: CA: %w", err)
	}
	return certs[0], key, nil
}

// Check validates p for serving name at now and describes it: the chain
// parses (leaf first, each signed by the next), the key is the leaf's and
// of a type mail clients take (RSA of 2048 bits or more, ECDSA P-256 or
// P-384), the leaf is valid now, has server use and names name. Every
// error says what is wrong.
func Check(p Pair, name string, now time.Time) (Info, error) {
	certs, err := parseChain(p.Chain)
	if err != nil {
		return Info{}, err
	}
	key, err := parseKey(p.Key)
	if err != nil {
		return Info{}, err
	}
	leaf := certs[0]
	if err := keyType(leaf.PublicKey); err != nil {
		return Info{}, fmt.Errorf("certificate: %w", err)
	}
	if !publicEqual(key.Public(), leaf.PublicKey) {
		return Info{}, fmt.Errorf("the key does not match the certificate %q (the first in the chain)", leaf.Subject.CommonName)
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			return Info{}, fmt.Errorf("chain: certificate %d (%q) is not signed by certificate %d (%q): put the leaf first, then each issuer: %v",
				i+1, certs[i].Subject.CommonName, i+2, certs[i+1].Subject.CommonName, err)
		}
	}
	if now.Before(leaf.NotBefore) {
		return Info{}, fmt.Errorf("certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(leaf.NotAfter) {
		return Info{}, fmt.Errorf("certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return Info{}, fmt.Errorf("certificate %q is not for server use (extended key usage)", leaf.Subject.CommonName)
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return Info{}, fmt.Errorf("certificate %q is not valid for the service name %s (its names: %s)", leaf.Subject.CommonName, name, strings.Join(leaf.DNSNames, ", "))
	}
	return describe(certs), nil
}

func describe(certs []*x509.Certificate) Info {
	leaf := certs[0]
	sum := sha256.Sum256(leaf.Raw)
	var fp []string
	for _, b := range sum {
		fp = append(fp, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	return Info{
		Subject: leaf.Subject.CommonName, Names: leaf.DNSNames, Issuer: leaf.Issuer.CommonName,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, SHA256: strings.Join(fp, ":"), Chain: len(certs),
	}
}

// Describe parses a chain already checked and describes its leaf.
func Describe(chain []byte) (Info, error) {
	certs, err := parseChain(chain)
	if err != nil {
		return Info{}, err
	}
	return describe(certs), nil
}

func parseChain(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("chain: PEM block %d is a %q, want CERTIFICATE", n, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("chain: certificate %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("chain: no PEM certificate in it")
	}
	if strings.TrimSpace(string(b)) != "" {
		return nil, errors.New("chain: text after the last PEM certificate")
	}
	return certs, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("key: no PEM block in it")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("key: more than one PEM block (want only the private key)")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("key: PEM block is a %q, want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY (unencrypted)", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key: a %T cannot sign", k)
	}
	if err := keyType(s.Public()); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return s, nil
}

func keyType(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("an RSA key of %d bits: want 2048 or more", k.N.BitLen())
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("an ECDSA key on %s: want P-256 or P-384", k.Curve.Params().Name)
		}
		return nil
	}
	return fmt.Errorf("a %T key: want RSA (2048 bits or more) or ECDSA (P-256, P-384), which every mail client takes", pub)
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
