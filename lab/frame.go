package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Ethernet, IPv4 and UDP, just enough for the switch to find DHCP requests
// among the frames it forwards and to answer them.

const (
	ethHeader      = 14
	etherIPv4      = 0x0800
	protoTCP       = 6
	protoUDP       = 17
	udpHeader      = 8
	portDHCPServer = 67
	portDHCPClient = 68
)

// macOf returns a frame's destination and source addresses.
func macOf(frame []byte) (dst, src [6]byte) {
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	return dst, src
}

// isUnicast reports whether mac names one station (the I/G bit clear).
func isUnicast(mac [6]byte) bool { return mac[0]&1 == 0 }

// tcpPorts returns the source and destination ports of an IPv4 TCP
// frame (its first fragment); ok is false for anything else.
func tcpPorts(frame []byte) (src, dst uint16, ok bool) {
	if len(frame) < ethHeader+20 || binary.BigEndian.Uint16(frame[12:14]) != etherIPv4 {
		return 0, 0, false
	}
	ip := frame[ethHeader:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != protoTCP || len(ip) < ihl+4 {
		return 0, 0, false
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 { // a later fragment has no ports
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(ip[ihl : ihl+2]), binary.BigEndian.Uint16(ip[ihl+2 : ihl+4]), true
}

// udpPayload returns the payload of an IPv4 UDP frame sent to port, or
// nil if frame is anything else.
func udpPayload(frame []byte, port uint16) []byte {
	if len(frame) < ethHeader+20 || binary.BigEndian.Uint16(frame[12:14]) != etherIPv4 {
		return nil
	}
	ip := frame[ethHeader:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != protoUDP || len(ip) < ihl+udpHeader {
		return nil
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // a fragment
		return nil
	}
	udp := ip[ihl:]
	n := int(binary.BigEndian.Uint16(udp[4:6]))
	if binary.BigEndian.Uint16(udp[2:4]) != port || n < udpHeader || n > len(udp) {
		return nil
	}
	return udp[udpHeader:n]
}

// udpFrame builds an Ethernet frame carrying an IPv4 UDP datagram.
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, ethHeader+20+udpHeader+len(payload))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], etherIPv4)
	ip := f[ethHeader : ethHeader+20]
	ip[0], ip[8], ip[9] = 0x45, 64, protoUDP
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+udpHeader+len(payload)))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip))
	udp := f[ethHeader+20:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpHeader+len(payload)))
	copy(udp[udpHeader:], payload)
	pseudo := make([]byte, 12)
	copy(pseudo[0:4], s4[:])
	copy(pseudo[4:8], d4[:])
	pseudo[9] = protoUDP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(udp)))
	sum := checksum(sum16(0, pseudo), udp)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:8], sum)
	return f
}

// sum16 adds b to the ones' complement sum s.
func sum16(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum is the Internet checksum of b continuing the partial sum s.
func checksum(s uint32, b []byte) uint16 {
	s = sum16(s, b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
