package mail

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DKIMKey is a domain's DKIM signing key as the cluster keeps it: rspamd
// signs the domain's outbound mail with it, and the domain's DNS
// publishes its public half at Selector._domainkey.Domain (Record).
type DKIMKey struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// Key is the RSA private key, PKCS #8 in PEM.
	Key []byte `json:"key"`
}

// DKIMBits is the size of the RSA keys NewDKIMKey makes: what RFC 8301
// asks signers for (at least 1024, preferably 2048) and every verifier
// takes; 4096-bit public keys do not fit most DNS providers' TXT
// records.
const DKIMBits = 2048

// NewDKIMKey makes a key for domain. The selector is "tandem" and the
// day it was made (tandem20261202), so a key made later for the same
// domain never takes the place of a record still published.
func NewDKIMKey(domain string, now time.Time) (DKIMKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, DKIMBits)
	if err != nil {
		return DKIMKey{}, fmt.Errorf("dkim key for %s: %w", domain, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return DKIMKey{}, fmt.Errorf("dkim key for %s: %w", domain, err)
	}
	return DKIMKey{Domain: domain, Selector: "tandem" + now.UTC().Format("20060102"),
		Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// publicKey is the base64 of the key's SubjectPublicKeyInfo: the record's
// p= tag.
func (k DKIMKey) publicKey() (string, error) {
	b, _ := pem.Decode(k.Key)
	if b == nil {
		return "", errors.New("no PEM key")
	}
	priv, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return "", err
	}
	rk, ok := priv.(*rsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("a %T, not an RSA key", priv)
	}
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// Name is the DNS name of the key's record.
func (k DKIMKey) Name() string { return k.Selector + "._domainkey." + k.Domain + "." }

// TXT is the record's text: "v=DKIM1; k=rsa; p=...".
func (k DKIMKey) TXT() (string, error) {
	p, err := k.publicKey()
	if err != nil {
		return "", fmt.Errorf("dkim key for %s: %w", k.Domain, err)
	}
	return "v=DKIM1; k=rsa; p=" + p, nil
}

// Record is the key's TXT record as a zone file line:
//
//	SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=..." "..."
//
// The text is split into strings of at most 255 bytes (a DNS
// character-string's limit; a 2048-bit key's text is about 410): a
// resolver joins them into one, as DKIM verifiers read it (RFC 6376,
// 3.6.2.2).
func (k DKIMKey) Record() (string, error) {
	txt, err := k.TXT()
	if err != nil {
		return "", err
	}
	var parts []string
	for len(txt) > 255 {
		parts, txt = append(parts, `"`+txt[:255]+`"`), txt[255:]
	}
	parts = append(parts, `"`+txt+`"`)
	return k.Name() + " IN TXT " + strings.Join(parts, " "), nil
}
