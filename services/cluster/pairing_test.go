package cluster

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	code, err := Create(c, st)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if _, _, err := normalizeCode(code); err != nil {
		t.Errorf("Create returned a bad code %q: %v", code, err)
	}
	if _, err := Create(c, st); !errors.Is(err, ErrAlreadyPaired) {
		t.Errorf("second Create = %v, want ErrAlreadyPaired", err)
	}
	for name, perm := range map[string]os.FileMode{"node.key": 0o600, "ca.key": 0o600, "pairing-codes": 0o600, "node.crt": 0o644} {
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
	if _, _, err := st.TLS(true); err != nil {
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
	if _, err := Create(c, st, "ABCD-EFGH-JKLM-NPQR", "bad-code"); err == nil || !strings.Contains(err.Error(), `"bad-code"`) {
		t.Fatalf("Create with a bad preset code = %v, want an error naming it", err)
	}
	if st.Paired() {
		t.Fatal("a failed Create left the node paired")
	}
	code, err := Create(c, st, "abcd-efgh-jklm-npqr", "WXYZ-2345-6789-ABCD")
	if err != nil || code != "abcd-efgh-jklm-npqr" {
		t.Fatalf("Create = %q, %v; want the first preset code", code, err)
	}
	b, _ := st.Read("pairing-codes")
	var stored []storedCode
	if err := json.Unmarshal(b, &stored); err != nil || len(stored) != 2 || stored[0].Secret != "ABCDEFGHJKLMNPQR" || stored[1].Secret != "WXYZ23456789ABCD" {
		t.Errorf("pairing-codes = %s (%v), want both codes normalized", b, err)
	}
}
