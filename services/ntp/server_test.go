package ntp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

func TestServerAnswer(t *testing.T) {
	rx := time.Date(2024, 5, 1, 12, 0, 0, 500_000_000, time.UTC)
	req := make([]byte, 48)
	req[0] = 3<<3 | 3 // version 3, client
	req[2] = 6
	copy(req[40:48], "cookie!!")
	r := Server{}.answer(req, rx)
	if r == nil {
		t.Fatal("answer(v3 client request) = nil, want a reply")
	}
	if li, vn, mode := r[0]>>6, r[0]>>3&7, r[0]&7; li != 0 || vn != 3 || mode != 4 {
		t.Errorf("reply LI/VN/mode = %d/%d/%d, want 0/3/4", li, vn, mode)
	}
	if r[1] != 1 || string(r[12:16]) != "LOCL" || r[2] != 6 {
		t.Errorf("reply stratum %d refid %q poll %d, want 1 \"LOCL\" 6", r[1], r[12:16], r[2])
	}
	if !bytes.Equal(r[24:32], req[40:48]) {
		t.Errorf("reply origin = %q, want the request's transmit %q", r[24:32], req[40:48])
	}
	if got := fromNTP(binary.BigEndian.Uint64(r[32:40])); !got.Equal(rx) && got.Sub(rx).Abs() > time.Microsecond {
		t.Errorf("reply receive timestamp = %v, want %v", got, rx)
	}
	if r := (Server{Stratum: 3}).answer(req, rx); r[1] != 3 || string(r[12:16]) == "LOCL" {
		t.Errorf("Stratum 3: reply stratum %d refid %q, want 3 and no LOCL", r[1], r[12:16])
	}
	for _, b0 := range []byte{4<<3 | 4, 2<<3 | 6, 4<<3 | 1, 0<<3 | 3} { // server, control, symmetric, version 0
		req[0] = b0
		if r := (Server{}).answer(req, rx); r != nil {
			t.Errorf("answer(first byte %#x) = a reply, want none (only client requests are answered)", b0)
		}
	}
	if r := (Server{}).answer(req[:47], rx); r != nil {
		t.Error("answer(47 bytes) = a reply, want none")
	}
}
