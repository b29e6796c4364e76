package network

import (
	"fmt"
	"slices"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"golang.org/x/sys/unix"
)

// LinkState is one interface as the kernel has it.
type LinkState struct {
	Name      string   `json:"name"`
	Index     uint32   `json:"index"`
	Kind      string   `json:"kind,omitempty"` // "bond", "vlan", "veth", "" for plain
	MAC       string   `json:"mac,omitempty"`
	MTU       uint32   `json:"mtu"`
	Up        bool     `json:"up"`   // administratively up
	Oper      string   `json:"oper"` // operational state: up, down, lowerlayerdown, ...
	Master    string   `json:"master,omitempty"`
	BondState string   `json:"bond_state,omitempty"` // member of a bond: active or backup
	Addresses []string `json:"addresses,omitempty"`
}

func (l LinkState) String() string {
	s := fmt.Sprintf("%s %s", l.Name, l.Oper)
	if l.Master != "" {
		s += " in " + l.Master + " (" + l.BondState + ")"
	}
	for _, a := range l.Addresses {
		s += " " + a
	}
	return s
}

var operNames = map[rtnetlink.OperationalState]string{
	rtnetlink.OperStateUnknown: "unknown", rtnetlink.OperStateNotPresent: "notpresent",
	rtnetlink.OperStateDown: "down", rtnetlink.OperStateLowerLayerDown: "lowerlayerdown",
	rtnetlink.OperStateTesting: "testing", rtnetlink.OperStateDormant: "dormant",
	rtnetlink.OperStateUp: "up",
}

// State reports every link but loopback, sorted by index.
func (s *Service) State() ([]LinkState, error) {
	ls, err := s.links()
	if err != nil {
		return nil, err
	}
	byIndex := map[uint32]string{}
	for _, l := range ls {
		byIndex[l.Index] = l.Attributes.Name
	}
	var out []LinkState
	for i := range ls {
		l := &ls[i]
		if l.Flags&unix.IFF_LOOPBACK != 0 {
			continue
		}
		st := LinkState{
			Name: l.Attributes.Name, Index: l.Index, Kind: kind(l), MTU: l.Attributes.MTU,
			Up: l.Flags&unix.IFF_UP != 0, Oper: operNames[l.Attributes.OperationalState],
		}
		if len(l.Attributes.Address) > 0 {
			st.MAC = l.Attributes.Address.String()
		}
		if m := l.Attributes.Master; m != nil {
			st.Master = byIndex[*m]
		}
		if i := l.Attributes.Info; i != nil {
			if bs, ok := i.SlaveData.(*driver.BondSlave); ok && bs.State != nil {
				st.BondState = map[driver.BondSlaveState]string{0: "active", 1: "backup"}[*bs.State]
			}
		}
		addrs, err := s.addrs(l.Index)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if !a.Addr().IsLinkLocalUnicast() {
				st.Addresses = append(st.Addresses, a.String())
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b LinkState) int { return int(a.Index) - int(b.Index) })
	return out, nil
}
