package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAuthNeedsClusterCertificate(t *testing.T) {
	d := &Daemon{}
	ok := d.auth(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		name string
		tls  *tls.ConnectionState
		want int
	}{
		{"plain", nil, http.StatusUnauthorized},
		{"tls without client certificate", &tls.ConnectionState{}, http.StatusUnauthorized},
		{"verified client certificate", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}, http.StatusTeapot},
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
	for _, body := range []string{`{"nod":"a"}`, `not json`} {
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
