package lab

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeVM stands in for a QEMU dgram netdev: a UDP socket on loopback that
// sends frames to its switch port.
type fakeVM struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
	mac  net.HardwareAddr
}

func newFakeVM(t *testing.T, s *Switch, name, mac string) *fakeVM {
	t.Helper()
	ap, err := s.AddVMPort(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, _ := net.ParseMAC(mac)
	return &fakeVM{t: t, conn: c, to: net.UDPAddrFromAddrPort(ap), mac: m}
}

func (v *fakeVM) send(dst net.HardwareAddr, payload string) {
	v.t.Helper()
	f := append(append(append([]byte{}, dst...), v.mac...), 0x88, 0xb5) // local experimental ethertype
	if _, err := v.conn.WriteToUDP(append(f, payload...), v.to); err != nil {
		v.t.Fatal(err)
	}
}

// recv returns the next frame, or nil after a short wait.
func (v *fakeVM) recv() []byte {
	buf := make([]byte, 2048)
	v.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, _, err := v.conn.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func testSwitch(t *testing.T) (*Switch, *fakeVM, *fakeVM, *fakeVM) {
	t.Helper()
	fixed := map[[6]byte]netip.Addr{{0x52, 0x54, 0, 0x77, 0, 0x11}: netip.MustParseAddr("10.77.0.11")}
	s := newSwitch(&dhcpServer{server: HostAddr, mask: net.CIDRMask(24, 32),
		mac: net.HardwareAddr{2, 0x77, 0, 0, 0, 1}, fixed: fixed}, t.Logf)
	t.Cleanup(s.Close)
	a := newFakeVM(t, s, "a", "52:54:00:77:00:11")
	b := newFakeVM(t, s, "b", "52:54:00:77:00:12")
	c := newFakeVM(t, s, "c", "52:54:00:77:00:13")
	// Each port learns its peer's UDP address and MAC from a first frame.
	for _, v := range []*fakeVM{a, b, c} {
		v.send(broadcast, "hello")
	}
	for _, v := range []*fakeVM{a, b, c} {
		for v.recv() != nil {
		}
	}
	return s, a, b, c
}

func TestSwitchForwardsAndFloods(t *testing.T) {
	_, a, b, c := testSwitch(t)
	a.send(b.mac, "to b")
	if f := b.recv(); !bytes.HasSuffix(f, []byte("to b")) {
		t.Errorf("b got %q, want the frame to b", f)
	}
	if f := c.recv(); f != nil {
		t.Errorf("c got %q, want nothing (b's MAC is learned)", f)
	}
	a.send(broadcast, "all")
	for _, v := range []*fakeVM{b, c} {
		if f := v.recv(); !bytes.HasSuffix(f, []byte("all")) {
			t.Errorf("%s got %q, want the broadcast", v.mac, f)
		}
	}
	if f := a.recv(); f != nil {
		t.Errorf("sender got its own broadcast back: %q", f)
	}
}

func TestSwitchPartition(t *testing.T) {
	s, a, b, c := testSwitch(t)
	if err := s.Partition("a"); err != nil {
		t.Fatal(err)
	}
	a.send(broadcast, "from a")
	for _, v := range []*fakeVM{b, c} {
		if f := v.recv(); f != nil {
			t.Errorf("partitioned a reached %s: %q", v.mac, f)
		}
	}
	b.send(c.mac, "b to c")
	if f := c.recv(); !bytes.HasSuffix(f, []byte("b to c")) {
		t.Errorf("c got %q from b, want the frame: b and c are on one side", f)
	}
	if err := s.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	b.send(a.mac, "b to a")
	if f := a.recv(); !bytes.HasSuffix(f, []byte("b to a")) {
		t.Errorf("a got %q from b, want the frame: a and b are on one side", f)
	}
	if err := s.Partition("nosuch"); err == nil {
		t.Error("Partition(nosuch) = nil, want an error")
	}
	if err := s.Partition(); err != nil {
		t.Fatal(err)
	}
	a.send(c.mac, "healed")
	if f := c.recv(); !bytes.HasSuffix(f, []byte("healed")) {
		t.Errorf("after heal c got %q, want the frame", f)
	}
}

func TestSwitchDHCP(t *testing.T) {
	_, a, b, _ := testSwitch(t)
	for _, tc := range []struct {
		v    *fakeVM
		typ  dhcpv4.MessageType
		want dhcpv4.MessageType
	}{
		{a, dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeOffer},
		{a, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeAck},
	} {
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(tc.v.mac), dhcpv4.WithMessageType(tc.typ))
		if err != nil {
			t.Fatal(err)
		}
		f := udpFrame(broadcast, tc.v.mac, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}),
			portDHCPClient, portDHCPServer, req.ToBytes())
		_, _ = tc.v.conn.WriteToUDP(f, tc.v.to)
		got := tc.v.recv()
		if got == nil {
			t.Fatalf("%s: no reply", tc.typ)
		}
		if !bytes.Equal(got[0:6], tc.v.mac) {
			t.Errorf("%s: reply to MAC %x, want %s", tc.typ, got[0:6], tc.v.mac)
		}
		p := udpPayload(got, portDHCPClient)
		resp, err := dhcpv4.FromBytes(p)
		if err != nil {
			t.Fatalf("%s: parse reply: %v", tc.typ, err)
		}
		if resp.MessageType() != tc.want || resp.YourIPAddr.String() != "10.77.0.11" ||
			!resp.ServerIdentifier().Equal(HostAddr.AsSlice()) {
			t.Errorf("%s: reply %s yiaddr %s server %s, want %s 10.77.0.11 %s",
				tc.typ, resp.MessageType(), resp.YourIPAddr, resp.ServerIdentifier(), tc.want, HostAddr)
		}
		if checksum(0, got[ethHeader:ethHeader+20]) != 0 {
			t.Errorf("%s: bad IPv4 header checksum", tc.typ)
		}
		if f := b.recv(); f != nil {
			t.Errorf("%s: the reply reached another port", tc.typ)
		}
	}
	// A MAC with no fixed address gets no answer.
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(b.mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	_, _ = b.conn.WriteToUDP(udpFrame(broadcast, b.mac, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		portDHCPClient, portDHCPServer, req.ToBytes()), b.to)
	if f := b.recv(); f != nil {
		t.Errorf("unknown MAC got a reply: %x", f)
	}
}

// tcpFrame is an Ethernet frame from v to dst carrying the start of an
// IPv4 TCP segment from port sport to dport.
func (v *fakeVM) tcpFrame(dst net.HardwareAddr, sport, dport uint16, payload string) []byte {
	f := append(append(append([]byte{}, dst...), v.mac...), 0x08, 0x00)
	ip := make([]byte, 20+20)
	ip[0], ip[8], ip[9] = 0x45, 64, protoTCP
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)+len(payload)))
	binary.BigEndian.PutUint16(ip[20:22], sport)
	binary.BigEndian.PutUint16(ip[22:24], dport)
	ip[32] = 5 << 4 // data offset
	return append(append(f, ip...), payload...)
}

func (v *fakeVM) sendFrame(f []byte) {
	v.t.Helper()
	if _, err := v.conn.WriteToUDP(f, v.to); err != nil {
		v.t.Fatal(err)
	}
}

func TestSwitchBlockTCP(t *testing.T) {
	s, a, b, _ := testSwitch(t)
	passes := func(f []byte, want bool, what string) {
		t.Helper()
		a.sendFrame(f)
		got := b.recv()
		if (got != nil) != want {
			t.Errorf("%s: b received %v, want %v", what, got != nil, want)
		}
	}
	passes(a.tcpFrame(b.mac, 40000, 7789, "drbd"), true, "before any block, TCP to 7789")
	s.BlockTCP(7789)
	if got := s.BlockedTCP(); len(got) != 1 || got[0] != 7789 {
		t.Errorf("BlockedTCP() = %v, want [7789]", got)
	}
	passes(a.tcpFrame(b.mac, 40000, 7789, "drbd"), false, "blocked, TCP to 7789")
	passes(a.tcpFrame(b.mac, 7789, 40000, "drbd reply"), false, "blocked, TCP from 7789")
	passes(a.tcpFrame(b.mac, 40000, 2380, "etcd"), true, "blocked 7789, TCP to 2380")
	udp := udpFrame(b.mac, a.mac, netip.MustParseAddr("10.77.0.11"), netip.MustParseAddr("10.77.0.12"), 40000, 7789, []byte("udp"))
	passes(udp, true, "blocked TCP 7789, UDP to 7789")
	s.BlockTCP()
	passes(a.tcpFrame(b.mac, 40000, 7789, "drbd"), true, "block lifted, TCP to 7789")
}
