// Package vip is the virtual IP resource agent: it adds and removes an
// address on an interface over netlink and announces it with gratuitous
// ARP so switches and clients learn the new owner at once.
package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotRunning says the address is not on the interface.
var ErrNotRunning = errors.New("vip: address not present")

// VIP is one virtual address on one interface.
type VIP struct {
	// Prefix is the address with its prefix length, e.g. 10.0.0.100/24.
	Prefix netip.Prefix
	// Interface is the link the address goes on.
	Interface string
	// ARPCount is how many gratuitous ARPs to send (default 3), ARPGap
	// the pause between them (default 100ms).
	ARPCount int
	ARPGap   time.Duration
}

// Parse reads "ADDR/LEN".
func Parse(s, ifname string) (*VIP, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("vip address %q: want an IPv4 address with prefix length, e.g. 10.0.0.100/24", s)
	}
	if ifname == "" {
		return nil, fmt.Errorf("vip %s: no interface", s)
	}
	return &VIP{Prefix: p, Interface: ifname}, nil
}

func (v *VIP) addr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: v.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(v.Prefix.Bits(), 32)}}
}

func (v *VIP) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(v.Interface)
	if err != nil {
		return nil, fmt.Errorf("vip %s: link %s: %w", v.Prefix, v.Interface, err)
	}
	return l, nil
}

// Start adds the address (if missing) and sends gratuitous ARP.
func (v *VIP) Start(ctx context.Context) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, v.addr()); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("vip %s: add to %s: %w", v.Prefix, v.Interface, err)
	}
	return v.announce(ctx, l)
}

// Stop removes the address; a missing address is success.
func (v *VIP) Stop(ctx context.Context) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, v.addr()); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("vip %s: remove from %s: %w", v.Prefix, v.Interface, err)
	}
	return nil
}

// Monitor reports ErrNotRunning if the address is missing.
func (v *VIP) Monitor(ctx context.Context) error {
	l, err := v.link()
	if err != nil {
		return err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("vip %s: list addresses of %s: %w", v.Prefix, v.Interface, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == v.Prefix.Addr() {
			return nil
		}
	}
	return ErrNotRunning
}

func (v *VIP) announce(ctx context.Context, l netlink.Link) error {
	ifi, err := net.InterfaceByName(v.Interface)
	if err != nil {
		return fmt.Errorf("vip %s: gratuitous ARP: %w", v.Prefix, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return fmt.Errorf("vip %s: gratuitous ARP on %s: %w", v.Prefix, v.Interface, err)
	}
	defer c.Close()
	frame := GratuitousARP(ifi.HardwareAddr, v.Prefix.Addr())
	n, gap := v.ARPCount, v.ARPGap
	if n <= 0 {
		n = 3
	}
	if gap <= 0 {
		gap = 100 * time.Millisecond
	}
	bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(gap):
			}
		}
		if _, err := c.WriteTo(frame, bcast); err != nil {
			return fmt.Errorf("vip %s: send gratuitous ARP on %s: %w", v.Prefix, v.Interface, err)
		}
	}
	return nil
}

// GratuitousARP builds an Ethernet frame with an ARP request announcing
// ip at mac (sender and target address both ip).
func GratuitousARP(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 42)
	for i := 0; i < 6; i++ {
		b[i] = 0xff
	}
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(b[14:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(b[16:], 0x0800) // protocol: IPv4
	b[18], b[19] = 6, 4
	binary.BigEndian.PutUint16(b[20:], 1) // request
	a := ip.As4()
	copy(b[22:28], mac)
	copy(b[28:32], a[:])
	copy(b[38:42], a[:])
	return b
}
