package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAuthNeedsClusterCertificate(t *testing.T) {
	d := &Daemon{}
	ok := d.auth(admins, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	cert := func(role string) *tls.ConnectionState {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: "x", OrganizationalUnit: []string{role}}}
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}, PeerCertificates: []*x509.Certificate{c}}
	}
	tests := []struct {
		name string
		tls  *tls.ConnectionState
		want int
	}{
		{"plain", nil, http.StatusUnauthorized},
		{"tls without client certificate", &tls.ConnectionState{}, http.StatusUnauthorized},
		{"admin certificate", cert(CertAdmin), http.StatusTeapot},
		{"monitor certificate", cert(CertMonitor), http.StatusForbidden},
		{"node certificate", cert(CertNode), http.StatusForbidden},
		{"certificate without a role", cert(""), http.StatusForbidden},
		{"certificate with an unknown role", cert("root"), http.StatusForbidden},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		r.TLS = tt.tls
		w := httptest.NewRecorder()
		ok.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, w.Code, tt.want)
		}
	}
}

func TestDecodeIsStrict(t *testing.T) {
	for _, body := range []string{`{"nod":"a"}`, `not json`, `{"node":"a"}{"node":"b"}`, `{"node":"a"} x`} {
		w := httptest.NewRecorder()
		var req Request
		if decode(w, httptest.NewRequest("POST", "/v1/node/standby", strings.NewReader(body)), &req) {
			t.Errorf("decode(%s) accepted it", body)
		}
		if w.Code != http.StatusBadRequest {
			t.Errorf("decode(%s): status %d, want 400", body, w.Code)
		}
	}
}
