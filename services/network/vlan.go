package network

import (
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// vlan is the rtnetlink driver of 802.1Q links (IFLA_INFO_DATA of kind
// "vlan"), which the rtnetlink module does not ship.
type vlan struct {
	ID       uint16
	Protocol uint16 // network byte order value, 0x8100 when zero
}

func (*vlan) New() rtnetlink.LinkDriver { return &vlan{} }
func (*vlan) Kind() string              { return "vlan" }

func (v *vlan) Encode(ae *netlink.AttributeEncoder) error {
	ae.Uint16(unix.IFLA_VLAN_ID, v.ID)
	return nil
}

func (v *vlan) Decode(ad *netlink.AttributeDecoder) error {
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_VLAN_ID:
			v.ID = ad.Uint16()
		case unix.IFLA_VLAN_PROTOCOL:
			v.Protocol = ad.Uint16()
		}
	}
	return nil
}

func init() { _ = rtnetlink.RegisterDriver(&vlan{}) }
