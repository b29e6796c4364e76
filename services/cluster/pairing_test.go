package cluster

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCodeRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		c, err := NewCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 19 || strings.Count(c, "-") != 3 {
			t.Fatalf("NewCode() = %q, want XXXX-XXXX-XXXX-XXXX", c)
		}
		id, secret, err := normalizeCode(strings.ToLower(strings.ReplaceAll(c, "-", " ")))
		if err != nil || id != c[:4] || secret != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("normalizeCode(%q) = %q, %q, %v", c, id, secret, err)
		}
		if seen[c] {
			t.Fatalf("NewCode repeated %q", c)
		}
		seen[c] = true
	}
}

// TestCodeEntropy backs docs/security.md's 80 bits: the alphabet has 32
// distinct letters and every one of the 16 positions takes each of them
// (2000 codes miss a letter at some position with odds below 1e-25), so
// each position carries 5 random bits.
func TestCodeEntropy(t *testing.T) {
	letters := map[rune]bool{}
	for _, r := range codeAlphabet {
		letters[r] = true
	}
	if len(letters) != 32 || len(codeAlphabet) != 32 {
		t.Fatalf("codeAlphabet %q: %d distinct letters, want 32", codeAlphabet, len(letters))
	}
	var seen [16]map[byte]bool
	for i := range seen {
		seen[i] = map[byte]bool{}
	}
	for n := 0; n < 2000; n++ {
		c, err := NewCode()
		if err != nil {
			t.Fatal(err)
		}
		for i, ch := range []byte(strings.ReplaceAll(c, "-", "")) {
			seen[i][ch] = true
		}
	}
	for i, s := range seen {
		if len(s) != 32 {
			t.Errorf("position %d took %d letters in 2000 codes, want all 32", i, len(s))
		}
	}
}

func TestNormalizeCodeRejects(t *testing.T) {
	for _, c := range []string{"", "ABCD-EFGH", "ABCD-EFGH-JKLM-NPQ1", "ABCD-EFGH-JKLM-NPQRS"} {
		if _, _, err := normalizeCode(c); err == nil {
			t.Errorf("normalizeCode(%q) = nil error, want one", c)
		}
	}
}

func TestMACDependsOnCodeAndBody(t *testing.T) {
	r := pairRequest{Cluster: "c", CodeID: "ABCD", Member: Member{Name: "b"}, Nonce: "n"}
	m := mac("S1", r)
	if mac("S2", r) == m {
		t.Errorf("mac does not depend on the secret")
	}
	r2 := r
	r2.Member.Name = "x"
	if mac("S1", r2) == m {
		t.Errorf("mac does not depend on the body")
	}
}

func TestCreateWritesState(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData), "x")
	if err != nil {
		t.Fatal(err)
	}
	st := State{Dir: filepath.Join(t.TempDir(), "state")}
	codes, err := Create(c, st, nil)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if len(codes) != 3 || codes["b"] == "" || codes["c"] == "" || codes["admin"] == "" {
		t.Errorf("Create made codes %v, want one for b, c and admin", codes)
	}
	for name, code := range codes {
		if _, _, err := normalizeCode(code); err != nil {
			t.Errorf("Create returned a bad code for %s %q: %v", name, code, err)
		}
	}
	if _, err := Create(c, st, nil); !errors.Is(err, ErrAlreadyPaired) {
		t.Errorf("second Create = %v, want ErrAlreadyPaired", err)
	}
	for name, perm := range map[string]os.FileMode{"node.key": 0o600, "ca.key": 0o600, "pairing-codes": 0o600, "node.crt": 0o644, "crl.der": 0o644} {
		fi, err := os.Stat(st.Path(name))
		if err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), perm)
		}
	}
	caPEM, _ := st.Read("ca.crt")
	crtPEM, _ := st.Read("node.crt")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	blk, _ := pem.Decode(crtPEM)
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crt.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node certificate does not verify under the CA as a client: %v", err)
	}
	if err := crt.VerifyHostname("10.0.0.1"); err != nil {
		t.Errorf("node certificate not valid for its address: %v", err)
	}
	if !crt.IPAddresses[1].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("node certificate lacks loopback: %v", crt.IPAddresses)
	}
	if CertRole(crt) != CertNode || !slices.Contains(crt.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("node certificate: role %q, uses %v; want node, server and client", CertRole(crt), crt.ExtKeyUsage)
	}
	if life := crt.NotAfter.Sub(crt.NotBefore); life > NodeLifetime+2*time.Hour {
		t.Errorf("node certificate valid for %v, want at most %v", life, NodeLifetime)
	}
	if _, _, err := st.TLS(); err != nil {
		t.Errorf("State.TLS = %v", err)
	}
	cf, err := st.Cluster()
	if err != nil || cf.Bootstrap != "new" || cf.InitialCluster() != "a=https://10.0.0.1:2380" {
		t.Errorf("cluster.json = %+v, %v", cf, err)
	}
}

func TestUnpairedState(t *testing.T) {
	_, err := State{Dir: t.TempDir()}.Cluster()
	if !errors.Is(err, ErrNotPaired) {
		t.Errorf("Cluster() of an empty dir = %v, want ErrNotPaired", err)
	}
}

func TestCreateWithPresetCodes(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData), "x")
	if err != nil {
		t.Fatal(err)
	}
	st := State{Dir: t.TempDir()}
	for _, tt := range []struct {
		codes map[string]string
		want  string
	}{
		{map[string]string{"b": "ABCD-EFGH-JKLM-NPQR", "c": "bad-code"}, `code for c: pairing code "bad-code"`},
		{map[string]string{"a": "ABCD-EFGH-JKLM-NPQR"}, "code for a is this node"},
		{map[string]string{"Ops": "ABCD-EFGH-JKLM-NPQR"}, `code for "Ops": want a lower-case name`},
		{map[string]string{"b": "ABCD-EFGH-JKLM-NPQR", "c": "ABCD-WXYZ-JKLM-NPQR"}, "the codes for b and c start alike (ABCD)"},
	} {
		if _, err := Create(c, st, tt.codes); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Create with %v = %v, want an error with %q", tt.codes, err, tt.want)
		}
		if st.Paired() {
			t.Fatal("a failed Create left the node paired")
		}
	}
	codes, err := Create(c, st, map[string]string{"b": "abcd-efgh-jklm-npqr", "ops": "WXYZ-2345-6789-ABCD"})
	if err != nil || len(codes) != 2 {
		t.Fatalf("Create = %v, %v; want the preset codes", codes, err)
	}
	b, _ := st.Read("pairing-codes")
	var stored []storedCode
	if err := json.Unmarshal(b, &stored); err != nil || len(stored) != 2 {
		t.Fatalf("pairing-codes = %s (%v), want two codes", b, err)
	}
	want := []storedCode{{Secret: "ABCDEFGHJKLMNPQR", Name: "b", Role: "data"}, {Secret: "WXYZ23456789ABCD", Name: "ops", Role: AdminRole}}
	for i, w := range want {
		got := stored[i]
		if got.Secret != w.Secret || got.Name != w.Name || got.Role != w.Role || got.UsedBy != "" {
			t.Errorf("pairing-codes[%d] = %+v, want %+v (normalized, bound to its name and role)", i, got, w)
		}
	}
}
