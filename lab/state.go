package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"tandem/internal/atomicfile"
)

// Files in Options.Dir.
const (
	stateFile     = "lab.json"
	controlSocket = "lab.sock"
)

// State is what `tandem lab status` shows and lab.json holds.
type State struct {
	// PID is the process running the switch (`tandem lab up`, a test).
	PID         int
	Netns       string
	Host        netip.Addr
	VIP         netip.Addr
	Nodes       []NodeState
	Partitioned []string `json:",omitempty"`
	// BlockedTCP are the TCP ports the switch drops (CutReplication).
	BlockedTCP []uint16 `json:",omitempty"`
	Ports      []PortStats
	// NTPRequests counts the requests the lab's SNTP server (HostAddr:123)
	// received, by client IP.
	NTPRequests map[string]int `json:",omitempty"`
}

// NodeState is one VM.
type NodeState struct {
	Name string
	Addr netip.Addr
	MAC  string
	// PID is QEMU's process ID (of its last boot, if down).
	PID int
	Up  bool
	// Boots counts the node's boots: 1 after Start, one more for each
	// Boot or Reboot.
	Boots int
	Log   string
	// Disk is the node's disk, a raw file.
	Disk string
}

// Status returns the lab's state now.
func (l *Lab) Status() State {
	s := State{PID: os.Getpid(), Netns: l.netns, Host: HostAddr, VIP: VIP}
	if l.sw != nil {
		s.Partitioned, s.BlockedTCP, s.Ports = l.sw.Partitioned(), l.sw.BlockedTCP(), l.sw.Stats()
	}
	if l.ntp != nil {
		s.NTPRequests = l.ntp.counts()
	}
	for _, n := range l.opts.Nodes {
		ns := NodeState{Name: n.Name, Addr: n.Addr, MAC: n.MAC, Log: l.path(n.Name, ".log"), Disk: l.path(n.Name, ".raw")}
		l.mu.Lock()
		if vm := l.vms[n.Name]; vm != nil {
			ns.PID, ns.Up, ns.Boots = vm.PID(), !vm.Exited(), l.boots[n.Name]
		}
		l.mu.Unlock()
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}

// writeState writes lab.json atomically; nothing once Stop has begun.
func (l *Lab) writeState() error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.stopping {
		return errStopping
	}
	b, err := json.MarshalIndent(l.Status(), "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(l.opts.Dir, stateFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: write state: %w", err)
	}
	return nil
}

var errStopping = errors.New("lab stopping")

// ReadState reads the lab.json of the lab in dir.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("lab state: %w (is a lab up in %s?)", err, dir)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

// KillNode SIGKILLs node name's QEMU by the PID in dir's lab.json, after
// checking that the PID is still a QEMU.
func KillNode(dir, name string) error {
	s, err := ReadState(dir)
	if err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if n.Name == name {
			return killQEMU(n.PID)
		}
	}
	return fmt.Errorf("kill %s: %w", name, ErrUnknownNode)
}

// killQEMU kills pid if it is a running QEMU; nothing if it is gone.
func killQEMU(pid int) error {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmd), "qemu-system") {
		return nil // gone, or the PID was reused: not ours to kill
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill qemu %d: %w", pid, err)
	}
	return nil
}
