package network

import (
	"bytes"
	"fmt"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"tandem/internal/nodeconfig"
)

func (s *Service) links() ([]rtnetlink.LinkMessage, error) {
	ls, err := s.conn.Link.List()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return ls, nil
}

func (s *Service) link(name string) (*rtnetlink.LinkMessage, error) {
	ls, err := s.links()
	if err != nil {
		return nil, err
	}
	for i := range ls {
		if ls[i].Attributes != nil && ls[i].Attributes.Name == name {
			return &ls[i], nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, ErrNoLink)
}

func kind(l *rtnetlink.LinkMessage) string {
	if l.Attributes.Info != nil {
		return l.Attributes.Info.Kind
	}
	return ""
}

// permAddr is a link's own MAC, also while a bond has given it another.
func permAddr(l *rtnetlink.LinkMessage) net.HardwareAddr {
	if i := l.Attributes.Info; i != nil {
		if bs, ok := i.SlaveData.(*driver.BondSlave); ok && len(bs.PermHardwareAddr) > 0 {
			return bs.PermHardwareAddr
		}
	}
	return l.Attributes.Address
}

// matchLinks renames links matched by MAC and checks the others exist.
func (s *Service) matchLinks(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	for _, want := range cfg.Network.Links {
		ch, err := s.matchLink(want)
		if err != nil {
			return changes, err
		}
		changes = append(changes, ch...)
	}
	return changes, nil
}

func (s *Service) matchLink(want nodeconfig.Link) ([]Change, error) {
	hw := want.HardwareAddr()
	if hw == nil {
		_, err := s.link(want.Name)
		return nil, err
	}
	ls, err := s.links()
	if err != nil {
		return nil, err
	}
	for i := range ls {
		l := &ls[i]
		if k := kind(l); k == "bond" || k == "vlan" || !bytes.Equal(permAddr(l), hw) {
			continue
		}
		if l.Attributes.Name == want.Name {
			return nil, nil
		}
		if err := s.setDown(l); err != nil {
			return nil, err
		}
		err := s.conn.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Attributes: &rtnetlink.LinkAttributes{Name: want.Name}})
		if err != nil {
			return nil, fmt.Errorf("rename %s to %s: %w", l.Attributes.Name, want.Name, err)
		}
		return []Change{changef("%s: renamed from %s (mac %s)", want.Name, l.Attributes.Name, hw)}, nil
	}
	return nil, fmt.Errorf("%s (mac %s): %w", want.Name, hw, ErrNoLink)
}

func (s *Service) setDown(l *rtnetlink.LinkMessage) error {
	if l.Flags&unix.IFF_UP == 0 {
		return nil
	}
	if err := s.conn.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Flags: 0, Change: unix.IFF_UP}); err != nil {
		return fmt.Errorf("set %s down: %w", l.Attributes.Name, err)
	}
	return nil
}

func (s *Service) applyBonds(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	for _, b := range cfg.Network.Bonds {
		ch, err := s.applyBond(b)
		changes = append(changes, ch...)
		if err != nil {
			return changes, fmt.Errorf("bond %s: %w", b.Name, err)
		}
	}
	return changes, nil
}

func (s *Service) applyBond(b nodeconfig.Bond) ([]Change, error) {
	var changes []Change
	primary, err := s.link(b.Primary)
	if err != nil {
		return nil, err
	}
	miimon := uint32(b.MIIMon.Milliseconds())
	bond, err := s.link(b.Name)
	if err != nil {
		err := s.conn.Link.New(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
			Name: b.Name,
			Info: &rtnetlink.LinkInfo{Kind: "bond", Data: &driver.Bond{
				Mode: driver.BondModeActiveBackup, Miimon: &miimon, Primary: &primary.Index,
			}},
		}})
		if err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		changes = append(changes, changef("%s: created (active-backup, primary %s)", b.Name, b.Primary))
		if bond, err = s.link(b.Name); err != nil {
			return changes, err
		}
	}
	if kind(bond) != "bond" {
		return changes, fmt.Errorf("exists as a %q link, not a bond", kind(bond))
	}
	data, _ := bond.Attributes.Info.Data.(*driver.Bond)
	if data == nil {
		return changes, fmt.Errorf("no bond data from the kernel")
	}
	if data.Mode != driver.BondModeActiveBackup {
		// Loading the bonding module creates an empty balance-rr bond0.
		if err := s.setBondMode(bond); err != nil {
			return changes, err
		}
		changes = append(changes, changef("%s: mode %s -> active-backup", b.Name, data.Mode))
	}
	if data.Miimon == nil || *data.Miimon != miimon {
		if err := s.setBondAttr(bond.Index, unix.IFLA_BOND_MIIMON, miimon); err != nil {
			return changes, fmt.Errorf("set miimon: %w", err)
		}
		changes = append(changes, changef("%s: miimon %dms", b.Name, miimon))
	}
	for _, m := range b.Members {
		ch, err := s.enslave(bond, m)
		if err != nil {
			return changes, err
		}
		changes = append(changes, ch...)
	}
	// The kernel reports the primary only once it is a member: look again.
	if bond, err = s.link(b.Name); err != nil {
		return changes, err
	}
	if data, _ = bond.Attributes.Info.Data.(*driver.Bond); data == nil {
		return changes, fmt.Errorf("no bond data from the kernel")
	}
	if data.Primary == nil || *data.Primary != primary.Index {
		if err := s.setBondAttr(bond.Index, unix.IFLA_BOND_PRIMARY, primary.Index); err != nil {
			return changes, fmt.Errorf("set primary: %w", err)
		}
		changes = append(changes, changef("%s: primary %s", b.Name, b.Primary))
	}
	return changes, nil
}

// setBondAttr changes one bond option, without resending the mode (which
// the kernel refuses while the bond has members).
func (s *Service) setBondAttr(index uint32, attr uint16, v uint32) error {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attr, v)
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	return s.conn.Link.Set(&rtnetlink.LinkMessage{Index: index, Attributes: &rtnetlink.LinkAttributes{
		Info: &rtnetlink.LinkInfo{Kind: "bond", Data: &rtnetlink.LinkData{Name: "bond", Data: b}},
	}})
}

// setBondMode makes an existing bond without members active-backup.
func (s *Service) setBondMode(bond *rtnetlink.LinkMessage) error {
	if hasMembers, err := s.hasMembers(bond.Index); err != nil || hasMembers {
		return fmt.Errorf("exists with members in another mode than active-backup (%v)", err)
	}
	if err := s.setDown(bond); err != nil {
		return err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint8(unix.IFLA_BOND_MODE, uint8(driver.BondModeActiveBackup))
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	err = s.conn.Link.Set(&rtnetlink.LinkMessage{Index: bond.Index, Attributes: &rtnetlink.LinkAttributes{
		Info: &rtnetlink.LinkInfo{Kind: "bond", Data: &rtnetlink.LinkData{Name: "bond", Data: b}},
	}})
	if err != nil {
		return fmt.Errorf("set mode active-backup: %w", err)
	}
	return nil
}

func (s *Service) hasMembers(index uint32) (bool, error) {
	ls, err := s.links()
	if err != nil {
		return false, err
	}
	for _, l := range ls {
		if l.Attributes.Master != nil && *l.Attributes.Master == index {
			return true, nil
		}
	}
	return false, nil
}

func (s *Service) enslave(bond *rtnetlink.LinkMessage, name string) ([]Change, error) {
	l, err := s.link(name)
	if err != nil {
		return nil, err
	}
	if l.Attributes.Master != nil && *l.Attributes.Master == bond.Index {
		return nil, nil
	}
	if err := s.setDown(l); err != nil {
		return nil, err
	}
	master := bond.Index
	if err := s.conn.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Attributes: &rtnetlink.LinkAttributes{Master: &master}}); err != nil {
		return nil, fmt.Errorf("enslave %s: %w", name, err)
	}
	return []Change{changef("%s: member %s", bond.Attributes.Name, name)}, nil
}

func (s *Service) applyVLANs(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	for _, v := range cfg.Network.VLANs {
		parent, err := s.link(v.Link)
		if err != nil {
			return changes, fmt.Errorf("vlan %s: %w", v.Name, err)
		}
		l, err := s.link(v.Name)
		if err == nil {
			d, _ := l.Attributes.Info.Data.(*vlan)
			if kind(l) != "vlan" || d == nil || int(d.ID) != v.ID || l.Attributes.Type != parent.Index {
				return changes, fmt.Errorf("vlan %s: exists, but not as VLAN %d on %s", v.Name, v.ID, v.Link)
			}
			continue
		}
		err = s.conn.Link.New(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
			Name: v.Name,
			Type: parent.Index, // IFLA_LINK
			Info: &rtnetlink.LinkInfo{Kind: "vlan", Data: &vlan{ID: uint16(v.ID)}},
		}})
		if err != nil {
			return changes, fmt.Errorf("create vlan %s: %w", v.Name, err)
		}
		changes = append(changes, changef("%s: created (VLAN %d on %s)", v.Name, v.ID, v.Link))
	}
	return changes, nil
}

// applyLinkSettings sets MTUs and brings every configured interface and
// every bond member up.
func (s *Service) applyLinkSettings(cfg *nodeconfig.Config) ([]Change, error) {
	var changes []Change
	var members []string
	for _, b := range cfg.Network.Bonds {
		members = append(members, b.Members...)
	}
	for _, m := range members {
		ch, err := s.setLink(m, 0)
		changes = append(changes, ch...)
		if err != nil {
			return changes, err
		}
	}
	for _, ifc := range cfg.Interfaces() {
		ch, err := s.setLink(ifc.Name, ifc.MTU)
		changes = append(changes, ch...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

func (s *Service) setLink(name string, mtu int) ([]Change, error) {
	l, err := s.link(name)
	if err != nil {
		return nil, err
	}
	var changes []Change
	if mtu != 0 && l.Attributes.MTU != uint32(mtu) {
		if err := s.conn.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Attributes: &rtnetlink.LinkAttributes{MTU: uint32(mtu)}}); err != nil {
			return nil, fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
		}
		changes = append(changes, changef("%s: mtu %d -> %d", name, l.Attributes.MTU, mtu))
	}
	if l.Flags&unix.IFF_UP == 0 {
		if err := s.conn.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
			return changes, fmt.Errorf("set %s up: %w", name, err)
		}
		changes = append(changes, changef("%s: up", name))
	}
	return changes, nil
}
