package cluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeBodies feeds the API's strict body decoding (every POST
// endpoint's Request and the pairing request): it never panics, refuses
// with 400, and what it accepts survives a round trip unchanged.
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{
		`{"node":"data-a"}`, `{"node":"data-b","resource":"mail"}`, `{"on":true}`,
		`{"name":"ops","role":"admin"}`, `{"serial":"3408CEB7A8347123456E4E83EAE0F8F2"}`,
		`{"cluster":"lab","code_id":"ABCD","member":{"name":"data-b","role":"data","address":"10.77.0.12","peer_port":2380},"public_key":"x","nonce":"n","mac":"m"}`,
		`{"nod":"a"}`, `not json`, `{"node":"a"}{"node":"b"}`, `{"member":{"peer_port":1e99}}`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(v any) {
			w := httptest.NewRecorder()
			ok := decode(w, httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(string(body))), v)
			if !ok {
				if w.Code != http.StatusBadRequest {
					t.Fatalf("refused %q with %d, want 400", body, w.Code)
				}
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("accepted %q but cannot encode it: %v", body, err)
			}
			again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if !decode(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(string(b))), again) || !reflect.DeepEqual(v, again) {
				t.Fatalf("accepted %q as %s, which does not decode to the same", body, b)
			}
		}
		check(&Request{})
		check(&pairRequest{})
	})
}
