package lab

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// leaseTime is long enough that no renewal happens during a test run.
const leaseTime = 12 * time.Hour

// dhcpServer hands each known MAC its fixed address, so the images' DHCP
// client configures the lab addresses with no change to the image.
type dhcpServer struct {
	server netip.Addr // server identifier: the host's address in the lab
	mask   net.IPMask
	mac    net.HardwareAddr // source MAC of the replies
	fixed  map[[6]byte]netip.Addr
}

// answer returns the reply frame to a DHCP request payload and a summary
// for the log, or nil when the request gets none (unknown MAC, RELEASE,
// DECLINE).
func (d *dhcpServer) answer(payload []byte) ([]byte, string, error) {
	req, err := dhcpv4.FromBytes(payload)
	if err != nil {
		return nil, "", fmt.Errorf("dhcp: parse request: %w", err)
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		return nil, "", nil
	}
	addr, ok := d.fixed[[6]byte(req.ClientHWAddr)]
	if !ok {
		return nil, fmt.Sprintf("dhcp: %s from %s: unknown MAC, no answer", req.MessageType(), req.ClientHWAddr), nil
	}
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Sprintf("dhcp: %s from %s", req.MessageType(), req.ClientHWAddr), nil
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(addr.AsSlice()),
		dhcpv4.WithServerIP(d.server.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.server.AsSlice())),
		dhcpv4.WithNetmask(d.mask),
		dhcpv4.WithLeaseTime(uint32(leaseTime/time.Second)),
	)
	if err != nil {
		return nil, "", fmt.Errorf("dhcp: reply to %s: %w", req.ClientHWAddr, err)
	}
	// Broadcast at the IP level, unicast to the client's MAC on its own
	// port: the client has no address yet, and nobody else needs to see it.
	msg := fmt.Sprintf("dhcp: %s %s to %s", typ, addr, req.ClientHWAddr)
	return udpFrame(req.ClientHWAddr, d.mac, d.server, netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		portDHCPServer, portDHCPClient, resp.ToBytes()), msg, nil
}
