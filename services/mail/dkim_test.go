package mail

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// TestDKIMKey: a new key is RSA 2048 in PKCS #8, its selector names the
// day, and its record carries its public key in strings of at most 255
// bytes that join into the text.
func TestDKIMKey(t *testing.T) {
	k, err := NewDKIMKey("example.test", time.Date(2026, 12, 2, 23, 0, 0, 0, time.FixedZone("x", -3600*5)))
	if err != nil {
		t.Fatal(err)
	}
	if k.Selector != "tandem20261203" || k.Name() != "tandem20261203._domainkey.example.test." {
		t.Errorf("selector %q, name %q; want the day in UTC", k.Selector, k.Name())
	}
	b, _ := pem.Decode(k.Key)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key is not PKCS #8 PEM: %q", k.Key)
	}
	priv, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	rk, ok := priv.(*rsa.PrivateKey)
	if err != nil || !ok || rk.N.BitLen() != DKIMBits {
		t.Fatalf("key = %T, %v; want RSA %d", priv, err, DKIMBits)
	}
	txt, err := k.TXT()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(txt, "v=DKIM1; k=rsa; p=")
	der, _ := base64.StdEncoding.DecodeString(p)
	pub, err := x509.ParsePKIXPublicKey(der)
	if !ok || err != nil || !rk.PublicKey.Equal(pub) {
		t.Errorf("TXT() = %q (%v); want the key's public half", txt, err)
	}
	rec, err := k.Record()
	if err != nil {
		t.Fatal(err)
	}
	strs, ok := strings.CutPrefix(rec, k.Name()+` IN TXT "`)
	parts := strings.Split(strings.TrimSuffix(strs, `"`), `" "`)
	if !ok || len(parts) != 2 || len(parts[0]) != 255 || strings.Join(parts, "") != txt {
		t.Errorf("Record() = %q; want the text in strings of at most 255 bytes", rec)
	}
	if _, err := (DKIMKey{Domain: "x.test", Key: []byte("junk")}).TXT(); err == nil || !strings.Contains(err.Error(), "dkim key for x.test") {
		t.Errorf("TXT of a broken key: %v", err)
	}
}

// A root without rspamd (unpacked from an older template) gets no milter
// and no rspamd files.
func TestConfigWithoutRspamd(t *testing.T) {
	c := config{Hostname: "mail.example.test", Domain: "example.test", Listen: []string{"192.0.2.10"},
		DKIM: []DKIMKey{{Domain: "example.test", Selector: "s", Key: []byte("k")}}}
	files := c.files()
	for rel := range files {
		if strings.Contains(rel, "rspamd") || dkimFile(rel) {
			t.Errorf("file %s without rspamd", rel)
		}
	}
	if strings.Contains(string(files["etc/postfix/main.cf"]), "milter") || strings.Contains(string(files["etc/postfix/master.cf"]), "milter") {
		t.Error("Postfix has a milter without rspamd")
	}
}
