// Package dns is the node's split DNS server: authoritative for the cluster
// domain (SOA, NS, the service name's A record pointing at the VIP, the
// domain's MX pointing at the service name, one record per member), and a
// caching forwarder to configured upstreams for everything else. It answers
// only clients from the networks it is configured for (and loopback), so it
// is never an open resolver unless told so (Policy.OpenResolver). The zone
// is swapped atomically: a reload after a VIP or membership change never
// drops a query. Under abuse it stays up: a bounded number of queries go
// upstream at once (forward.go), UDP answers are rate-limited per client
// network (limit.go), forwarding loops end at the first turn (loop.go), and
// zone transfers, EDNS versions above 0 and opcodes other than QUERY get a
// short refusal.
package dns

import (
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Zone is the data of the cluster domain.
type Zone struct {
	// Domain is the zone's apex, for example "mail.example.org".
	Domain string
	// Service is the label of the service name (Service.Domain -> VIP).
	Service string
	// VIP is the service's address; invalid: the service name has no A.
	VIP netip.Addr
	// Members are the cluster's nodes, each Name.Domain -> Addr.
	Members []Member
	// TXT are text records inside the domain (the cluster domain's DKIM
	// key, say).
	TXT []TXT
	// TTL of every record.
	TTL time.Duration
}

// TXT is one text record: Name is relative to the domain
// ("tandem20261202._domainkey"), Text its text, split into strings of at
// most 255 bytes when served (a DNS character-string's limit).
type TXT struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Member is one cluster node.
type Member struct {
	Name string
	Addr netip.Addr
}

// zone is a Zone compiled into records, immutable once built.
type zone struct {
	apex   string // fqdn, lower case
	serial uint32
	soa    *mdns.SOA
	// names maps a lower-case fqdn to its records by type.
	names map[string]map[uint16][]mdns.RR
}

func compile(z Zone, serial uint32) *zone {
	apex := mdns.CanonicalName(z.Domain)
	ttl := uint32(z.TTL / time.Second)
	hdr := func(name string, t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	c := &zone{apex: apex, serial: serial, names: map[string]map[uint16][]mdns.RR{}}
	add := func(rr mdns.RR) {
		n := strings.ToLower(rr.Header().Name)
		if c.names[n] == nil {
			c.names[n] = map[uint16][]mdns.RR{}
		}
		c.names[n][rr.Header().Rrtype] = append(c.names[n][rr.Header().Rrtype], rr)
	}
	mname := "ns." + apex
	if len(z.Members) > 0 {
		mname = mdns.CanonicalName(z.Members[0].Name + "." + apex)
	}
	c.soa = &mdns.SOA{Hdr: hdr(apex, mdns.TypeSOA), Ns: mname, Mbox: "hostmaster." + apex,
		Serial: serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}
	add(c.soa)
	service := mdns.CanonicalName(z.Service + "." + apex)
	add(&mdns.MX{Hdr: hdr(apex, mdns.TypeMX), Preference: 10, Mx: service})
	if z.VIP.IsValid() {
		add(addrRR(hdr(service, 0), z.VIP))
	}
	for _, m := range z.Members {
		name := mdns.CanonicalName(m.Name + "." + apex)
		add(&mdns.NS{Hdr: hdr(apex, mdns.TypeNS), Ns: name})
		add(addrRR(hdr(name, 0), m.Addr))
	}
	if len(z.Members) == 0 {
		add(&mdns.NS{Hdr: hdr(apex, mdns.TypeNS), Ns: mname})
	}
	for _, t := range z.TXT {
		add(&mdns.TXT{Hdr: hdr(mdns.CanonicalName(t.Name+"."+apex), mdns.TypeTXT), Txt: splitTXT(t.Text)})
	}
	return c
}

// splitTXT cuts text into DNS character-strings of at most 255 bytes,
// which a resolver, and a DKIM verifier, joins again (RFC 6376, 3.6.2.2).
func splitTXT(text string) []string {
	var out []string
	for len(text) > 255 {
		out, text = append(out, text[:255]), text[255:]
	}
	return append(out, text)
}

func addrRR(h mdns.RR_Header, a netip.Addr) mdns.RR {
	if a.Is4() || a.Is4In6() {
		h.Rrtype = mdns.TypeA
		return &mdns.A{Hdr: h, A: a.Unmap().AsSlice()}
	}
	h.Rrtype = mdns.TypeAAAA
	return &mdns.AAAA{Hdr: h, AAAA: a.AsSlice()}
}

// contains reports whether the lower-case fqdn is in the zone.
func (z *zone) contains(name string) bool {
	return z != nil && mdns.IsSubDomain(z.apex, name)
}

// answer fills m for a question inside the zone.
func (z *zone) answer(m *mdns.Msg, q mdns.Question) {
	m.Authoritative = true
	name := strings.ToLower(q.Name)
	rrs, ok := z.names[name]
	if !ok {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{z.soa}
		return
	}
	if q.Qtype == mdns.TypeANY {
		// RFC 8482: one RRset, not everything (no amplification).
		var first uint16
		for t := range rrs {
			if first == 0 || t < first {
				first = t
			}
		}
		m.Answer = append(m.Answer, rrs[first]...)
		return
	}
	m.Answer = append(m.Answer, rrs[q.Qtype]...)
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{z.soa} // NODATA
	}
}
