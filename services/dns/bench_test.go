package dns

import (
	"context"
	"testing"

	mdns "github.com/miekg/dns"
)

// BenchmarkHandle is the handler's cost for a zone query, unpack to pack.
func BenchmarkHandle(b *testing.B) {
	s := New(Config{}, testZone())
	q := query("mail.mail.example.org.", mdns.TypeA)
	q.SetEdns0(1232, false)
	raw, _ := q.Pack()
	for b.Loop() {
		r := new(mdns.Msg)
		if err := r.Unpack(raw); err != nil {
			b.Fatal(err)
		}
		m := s.Handle(context.Background(), local, true, r)
		if _, err := m.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}
