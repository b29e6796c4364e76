package lab

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Switch is the lab's Ethernet switch. Each VM's NIC is a QEMU dgram
// netdev whose frames arrive as UDP datagrams on one of the switch's
// loopback sockets; the host's port is a TAP device in the lab's network
// namespace. The switch learns MACs, floods broadcasts and unknown
// destinations, answers DHCP from its fixed table, and drops every frame
// between a partitioned node and one that is not, and every TCP segment
// to or from a blocked port (BlockTCP).
//
// A switch in the test process, rather than QEMU's own socket links
// (point-to-point, or multicast, which leaves loopback), is what lets a
// test cut chosen links while the VMs run, and keeps all frames on
// 127.0.0.1.
type Switch struct {
	logf func(string, ...any)
	dhcp *dhcpServer

	mu     sync.Mutex
	ports  map[string]*port
	macs   map[[6]byte]*port
	cut    map[string]bool // the partitioned side
	tcp    map[uint16]bool // blocked TCP ports
	closed bool
}

// port is one switch port: a VM's UDP link or the host's TAP.
type port struct {
	name string
	conn *net.UDPConn       // VM port: the switch's socket
	peer *net.UDPAddr       // VM port: QEMU's socket, learned
	tap  io.ReadWriteCloser // host port

	rx, tx, dropped uint64
}

// PortStats counts the frames one port received, sent on, and dropped for
// a partition.
type PortStats struct {
	Name                  string
	Received, Sent, Drops uint64
}

// ErrUnknownPort is returned for a port name the switch does not have.
var ErrUnknownPort = errors.New("no such port")

func newSwitch(dhcp *dhcpServer, logf func(string, ...any)) *Switch {
	return &Switch{logf: logf, dhcp: dhcp, ports: map[string]*port{},
		macs: map[[6]byte]*port{}, cut: map[string]bool{}, tcp: map[uint16]bool{}}
}

// AddVMPort opens a UDP socket on 127.0.0.1 for the VM called name and
// returns its address, for qemu.Link.Remote.
func (s *Switch) AddVMPort(name string) (netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("switch port %s: %w", name, err)
	}
	p := &port{name: name, conn: c}
	if err := s.add(p); err != nil {
		c.Close()
		return netip.AddrPort{}, err
	}
	go s.readUDP(p)
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

// AddTapPort attaches a TAP device (or anything that reads and writes one
// Ethernet frame per call) as port name.
func (s *Switch) AddTapPort(name string, tap io.ReadWriteCloser) error {
	p := &port{name: name, tap: tap}
	if err := s.add(p); err != nil {
		return err
	}
	go s.readTap(p)
	return nil
}

func (s *Switch) add(p *port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ports[p.name]; ok || s.closed {
		return fmt.Errorf("switch port %s: exists or switch closed", p.name)
	}
	s.ports[p.name] = p
	return nil
}

func (s *Switch) readUDP(p *port) {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		if !from.IP.IsLoopback() {
			continue
		}
		s.mu.Lock()
		p.peer = from // QEMU's port; a restarted VM gets a new one
		s.mu.Unlock()
		s.frame(p, buf[:n])
	}
}

func (s *Switch) readTap(p *port) {
	buf := make([]byte, 65536)
	for {
		n, err := p.tap.Read(buf)
		if err != nil {
			return // closed
		}
		s.frame(p, buf[:n])
	}
}

// frame handles one frame received on src.
func (s *Switch) frame(src *port, f []byte) {
	if len(f) < ethHeader {
		return
	}
	if req := udpPayload(f, portDHCPServer); req != nil && s.dhcp != nil {
		reply, msg, err := s.dhcp.answer(req)
		if err != nil {
			s.logf("switch: port %s: %v", src.name, err)
		}
		if msg != "" {
			s.logf("switch: port %s: %s", src.name, msg)
		}
		if reply != nil {
			s.mu.Lock()
			s.send(src, reply)
			s.mu.Unlock()
		}
		return
	}
	dst, smac := macOf(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	src.rx++
	if isUnicast(smac) {
		s.macs[smac] = src
	}
	if p, ok := s.macs[dst]; ok && isUnicast(dst) {
		s.forward(src, p, f)
		return
	}
	for _, p := range s.ports {
		if p != src {
			s.forward(src, p, f)
		}
	}
}

// forward sends f from src to dst unless a partition lies between them
// or f is TCP on a blocked port.
func (s *Switch) forward(src, dst *port, f []byte) {
	if s.cut[src.name] != s.cut[dst.name] || s.blocked(f) {
		src.dropped++
		return
	}
	s.send(dst, f)
}

// send writes f to p; s.mu is held. A write error (a VM that died, a port
// not yet learned) loses the frame, as on a real wire.
func (s *Switch) send(p *port, f []byte) {
	switch {
	case p.tap != nil:
		_, _ = p.tap.Write(f) // a frame that cannot be delivered is dropped, as a switch drops it
	case p.peer != nil:
		_, _ = p.conn.WriteToUDP(f, p.peer)
	default:
		return
	}
	p.tx++
}

// Partition cuts the named ports off from all others: frames between a
// named port and an unnamed one are dropped, frames within either side
// pass. It replaces any earlier partition; no names heals.
func (s *Switch) Partition(names ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := map[string]bool{}
	for _, n := range names {
		if _, ok := s.ports[n]; !ok {
			return fmt.Errorf("partition %s: %w", n, ErrUnknownPort)
		}
		cut[n] = true
	}
	s.cut = cut
	return nil
}

// BlockTCP drops every TCP segment to or from one of ports, between any
// two ports of the switch: one link of the nodes cut (their DRBD
// replication, say) while the rest of their traffic passes, as when a
// dedicated replication cable fails. It replaces any earlier block; no
// ports lifts it. The segments vanish, with no reset, as on a cut wire.
func (s *Switch) BlockTCP(ports ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tcp = map[uint16]bool{}
	for _, p := range ports {
		s.tcp[p] = true
	}
}

// blocked reports whether f is TCP to or from a blocked port; s.mu is
// held.
func (s *Switch) blocked(f []byte) bool {
	if len(s.tcp) == 0 {
		return false
	}
	src, dst, ok := tcpPorts(f)
	return ok && (s.tcp[src] || s.tcp[dst])
}

// BlockedTCP returns the blocked TCP ports, sorted.
func (s *Switch) BlockedTCP() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Keys(s.tcp))
	slices.Sort(out)
	return out
}

// Partitioned returns the names on the cut-off side, sorted.
func (s *Switch) Partitioned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.cut {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Stats returns each port's counters, sorted by name.
func (s *Switch) Stats() []PortStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PortStats
	for _, p := range s.ports {
		out = append(out, PortStats{p.name, p.rx, p.tx, p.dropped})
	}
	slices.SortFunc(out, func(a, b PortStats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close closes every port.
func (s *Switch) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, p := range s.ports {
		if p.conn != nil {
			p.conn.Close()
		}
		if p.tap != nil {
			p.tap.Close()
		}
	}
}
