package mailtls

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCA(t *testing.T) (cert, key []byte) {
	t.Helper()
	cert, key, err := NewCA("lab")
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestIssueCheck(t *testing.T) {
	caCert, caKey := testCA(t)
	p, err := Issue(caCert, caKey, []string{"mail.example.test", "imap.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, name := range []string{"mail.example.test", "imap.example.test"} {
		info, err := Check(p, name, now)
		if err != nil {
			t.Fatalf("Check(%s) = %v", name, err)
		}
		if info.Subject != "mail.example.test" || info.Issuer != "tandem mail CA lab" || info.Chain != 2 || len(info.SHA256) != 95 {
			t.Errorf("info = %+v", info)
		}
		if info.Due(now) || !info.Due(now.Add(Lifetime*3/4)) {
			t.Errorf("Due: fresh %v, at 3/4 of its life %v; want false, true", info.Due(now), info.Due(now.Add(Lifetime*3/4)))
		}
	}
	if _, err := Check(p, "other.example.test", now); err == nil || !strings.Contains(err.Error(), "not valid for the service name other.example.test") {
		t.Errorf("Check for another name = %v", err)
	}
	if _, err := Check(p, "mail.example.test", now.Add(Lifetime+time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Check after expiry = %v", err)
	}
	// The CA's certificate was never one for a mail server.
	if _, err := Check(Pair{Chain: caCert, Key: caKey}, "mail.example.test", now); err == nil {
		t.Error("Check took the CA's own certificate")
	}
}

func TestCheckBadInput(t *testing.T) {
	caCert, caKey := testCA(t)
	p, err := Issue(caCert, caKey, []string{"mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Issue(caCert, caKey, []string{"mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := pem.Decode(p.Chain)
	leafPEM := pem.EncodeToMemory(leaf)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER := x509.MarshalPKCS1PrivateKey(small)
	for _, c := range []struct {
		name string
		p    Pair
		want string
	}{
		{"key of another certificate", Pair{p.Chain, other.Key}, "the key does not match"},
		{"no chain", Pair{nil, p.Key}, "no PEM certificate"},
		{"garbage after the chain", Pair{append(p.Chain, "junk"...), p.Key}, "text after the last"},
		{"key in the chain", Pair{append(p.Chain, p.Key...), p.Key}, `is a "PRIVATE KEY", want CERTIFICATE`},
		{"no key", Pair{p.Chain, nil}, "key: no PEM block"},
		{"two keys", Pair{p.Chain, append(p.Key, other.Key...)}, "more than one PEM block"},
		{"ed25519 key", Pair{p.Chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})}, "ed25519"},
		{"small RSA key", Pair{p.Chain, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: smallDER})}, "1024 bits"},
		{"encrypted key", Pair{p.Chain, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")}, "unencrypted"},
		{"chain in the wrong order", Pair{append(append([]byte{}, caCert...), leafPEM...), p.Key}, "the key does not match"},
	} {
		if _, err := Check(c.p, "mail.example.test", time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check = %v, want an error with %q", c.name, err, c.want)
		}
	}
	// A leaf followed by a certificate that did not sign it.
	ca2, _ := testCA(t)
	if _, err := Check(Pair{append(leafPEM, ca2...), p.Key}, "mail.example.test", time.Now()); err == nil || !strings.Contains(err.Error(), "is not signed by certificate 2") {
		t.Errorf("foreign issuer in the chain: Check = %v", err)
	}
}

// A certificate without server use is refused.
func TestCheckClientCertificate(t *testing.T) {
	caCert, caKey := testCA(t)
	ca, signer, err := parseCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	k, keyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mail.example.test"}, DNSNames: []string{"mail.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	p := Pair{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM}
	if _, err := Check(p, "mail.example.test", time.Now()); err == nil || !strings.Contains(err.Error(), "not for server use") {
		t.Errorf("Check of a client certificate = %v", err)
	}
}
