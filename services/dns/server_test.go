package dns

import (
	"context"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func testZone() Zone {
	return Zone{
		Domain:  "mail.example.org",
		Service: "mail",
		VIP:     netip.MustParseAddr("192.0.2.10"),
		Members: []Member{
			{"mail-a", netip.MustParseAddr("192.0.2.11")},
			{"mail-b", netip.MustParseAddr("2001:db8::12")},
		},
		TTL: 60 * time.Second,
	}
}

func query(name string, t uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, t)
	return m
}

// rrs renders a section as sorted presentation lines without TTLs, for
// comparisons that survive map order.
func rrs(sec []mdns.RR) string {
	var out []string
	for _, rr := range sec {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append(f[:1], f[2:]...), " "))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

var local = netip.MustParseAddr("127.0.0.1")

func TestAuthoritative(t *testing.T) {
	s := New(Config{Policy: Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}, testZone())
	serial := s.Serial()
	for _, tc := range []struct {
		name   string
		from   string
		q      *mdns.Msg
		rcode  int
		answer string
		ns     string
		noAuth bool
	}{
		{name: "service A", q: query("mail.mail.example.org.", mdns.TypeA), answer: "mail.mail.example.org. IN A 192.0.2.10"},
		{name: "case insensitive", q: query("MAIL.Mail.Example.ORG.", mdns.TypeA), answer: "mail.mail.example.org. IN A 192.0.2.10"},
		{name: "MX", q: query("mail.example.org.", mdns.TypeMX), answer: "mail.example.org. IN MX 10 mail.mail.example.org."},
		{name: "NS", q: query("mail.example.org.", mdns.TypeNS), answer: "mail.example.org. IN NS mail-a.mail.example.org.\nmail.example.org. IN NS mail-b.mail.example.org."},
		{name: "SOA", q: query("mail.example.org.", mdns.TypeSOA),
			answer: "mail.example.org. IN SOA mail-a.mail.example.org. hostmaster.mail.example.org. " + strconv.FormatUint(uint64(serial), 10) + " 3600 600 86400 60"},
		{name: "node A", q: query("mail-a.mail.example.org.", mdns.TypeA), answer: "mail-a.mail.example.org. IN A 192.0.2.11"},
		{name: "node AAAA", q: query("mail-b.mail.example.org.", mdns.TypeAAAA), answer: "mail-b.mail.example.org. IN AAAA 2001:db8::12"},
		{name: "ANY is one RRset", q: query("mail.example.org.", mdns.TypeANY), answer: "mail.example.org. IN NS mail-a.mail.example.org.\nmail.example.org. IN NS mail-b.mail.example.org."},
		{name: "NODATA", q: query("mail-a.mail.example.org.", mdns.TypeAAAA), ns: "SOA"},
		{name: "NXDOMAIN", q: query("nope.mail.example.org.", mdns.TypeA), rcode: mdns.RcodeNameError, ns: "SOA"},
		{name: "allowed network", from: "10.1.2.3", q: query("mail.mail.example.org.", mdns.TypeA), answer: "mail.mail.example.org. IN A 192.0.2.10"},
		{name: "refused network", from: "192.168.1.1", q: query("mail.mail.example.org.", mdns.TypeA), rcode: mdns.RcodeRefused, noAuth: true},
		{name: "no forwarders", q: query("example.net.", mdns.TypeA), rcode: mdns.RcodeRefused, noAuth: true},
		{name: "two questions", q: func() *mdns.Msg {
			m := query("mail.example.org.", mdns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), rcode: mdns.RcodeFormatError, noAuth: true},
		{name: "notify opcode", q: func() *mdns.Msg {
			m := query("mail.example.org.", mdns.TypeSOA)
			m.Opcode = mdns.OpcodeNotify
			return m
		}(), rcode: mdns.RcodeNotImplemented, noAuth: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := local
			if tc.from != "" {
				from = netip.MustParseAddr(tc.from)
			}
			m := s.Handle(context.Background(), from, true, tc.q)
			if m == nil {
				t.Fatalf("Handle(%v) = nil, want an answer", tc.q.Question)
			}
			if m.Rcode != tc.rcode {
				t.Errorf("Handle(%v).Rcode = %s, want %s", tc.q.Question, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if got := rrs(m.Answer); got != tc.answer {
				t.Errorf("Handle(%v).Answer =\n%s\nwant\n%s", tc.q.Question, got, tc.answer)
			}
			if tc.ns != "" && (len(m.Ns) != 1 || mdns.TypeToString[m.Ns[0].Header().Rrtype] != tc.ns) {
				t.Errorf("Handle(%v).Ns = %v, want one %s", tc.q.Question, m.Ns, tc.ns)
			}
			if m.Authoritative == tc.noAuth {
				t.Errorf("Handle(%v).Authoritative = %v, want %v", tc.q.Question, m.Authoritative, !tc.noAuth)
			}
			if m.Id != tc.q.Id {
				t.Errorf("Handle(%v).Id = %d, want %d", tc.q.Question, m.Id, tc.q.Id)
			}
		})
	}
}

func TestResponsesAreIgnored(t *testing.T) {
	s := New(Config{}, testZone())
	q := query("mail.example.org.", mdns.TypeSOA)
	q.Response = true
	if m := s.Handle(context.Background(), local, true, q); m != nil {
		t.Errorf("Handle(response) = %v, want nil", m)
	}
}

func TestSetZoneChangesAnswersAndSerial(t *testing.T) {
	s := New(Config{}, testZone())
	before := s.Serial()
	z := testZone()
	z.VIP = netip.MustParseAddr("192.0.2.99")
	z.Members = append(z.Members, Member{"mail-c", netip.MustParseAddr("192.0.2.13")})
	s.SetZone(z)
	if s.Serial() <= before {
		t.Errorf("Serial() after SetZone = %d, want > %d", s.Serial(), before)
	}
	m := s.Handle(context.Background(), local, true, query("mail.mail.example.org.", mdns.TypeA))
	if got := rrs(m.Answer); got != "mail.mail.example.org. IN A 192.0.2.99" {
		t.Errorf("service A after SetZone = %q, want the new VIP", got)
	}
	m = s.Handle(context.Background(), local, true, query("mail-c.mail.example.org.", mdns.TypeA))
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("new member A after SetZone = %v, want one answer", m)
	}
}

// Reloading while clients query must not lose a single answer.
func TestReloadDropsNoQueries(t *testing.T) {
	s := New(Config{}, testZone())
	pcs, lns, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pcs, lns) }()
	defer func() {
		cancel()
		//lint:ignore S1005 the dropped error is named for errcheck: the test is over
		_ = <-done
	}()
	addr := pcs[0].LocalAddr().String()
	waitServing(t, addr)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			z := testZone()
			z.VIP = netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%50)})
			s.SetZone(z)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	c := &mdns.Client{Timeout: 2 * time.Second}
	for i := range 300 {
		for _, net := range []string{"udp", "tcp"} {
			c.Net = net
			m, _, err := c.Exchange(query("mail.mail.example.org.", mdns.TypeA), addr)
			if err != nil || m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("query %d over %s during reloads = %v, %v; want one A", i, net, m, err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

func waitServing(t *testing.T, addr string) {
	t.Helper()
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	for range 50 {
		if _, _, err := c.Exchange(query("mail.example.org.", mdns.TypeSOA), addr); err == nil {
			return
		}
	}
	t.Fatalf("server on %s never answered", addr)
}

func TestTruncatesToClientSize(t *testing.T) {
	z := testZone()
	for i := range 60 {
		z.Members = append(z.Members, Member{"node" + strconv.Itoa(i), netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})})
	}
	s := New(Config{}, z)
	m := s.Handle(context.Background(), local, true, query("mail.example.org.", mdns.TypeNS))
	if !m.Truncated {
		t.Errorf("62 NS over UDP without EDNS: Truncated = false, want true")
	}
	if b, _ := m.Pack(); len(b) > mdns.MinMsgSize {
		t.Errorf("UDP answer without EDNS is %d bytes, want <= 512", len(b))
	}
	m = s.Handle(context.Background(), local, false, query("mail.example.org.", mdns.TypeNS))
	if m.Truncated || len(m.Answer) != 62 {
		t.Errorf("over TCP: Truncated = %v, %d answers; want false, 62", m.Truncated, len(m.Answer))
	}
}

func TestSetPolicy(t *testing.T) {
	s := New(Config{}, testZone())
	from := netip.MustParseAddr("10.1.1.1")
	q := query("mail.mail.example.org.", mdns.TypeA)
	if m := s.Handle(context.Background(), from, true, q); m.Rcode != mdns.RcodeRefused {
		t.Fatalf("before SetPolicy: rcode %s, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
	s.SetPolicy(Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if m := s.Handle(context.Background(), from, true, q); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("after allowing 10/8: %v, want the A record", m)
	}
}
