// Package lab runs tandem's three-VM lab: two data nodes and an arbitrator
// booted from built images under QEMU (TCG), joined by a switch in this
// process over UDP on loopback, with the host's port a TAP device in a
// network namespace of the lab's own. Tests use it in-process (Start,
// Kill, Partition, Heal, Stop); `tandem lab` drives it from a shell
// through a control socket. Nothing touches the host's own network.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"tandem/image"
	"tandem/internal/qemu"
)

// The lab network. The VIP is reserved for the cluster's service address;
// no VM gets it by DHCP.
var (
	Subnet = netip.MustParsePrefix("10.77.0.0/24")
	// HostAddr is the host's address in the lab's namespace, and the DHCP
	// server's identifier.
	HostAddr = netip.MustParseAddr("10.77.0.1")
	VIP      = netip.MustParseAddr("10.77.0.100")
)

// HostPort names the host's switch port, for Partition.
const HostPort = "host"

// Node is one VM of the lab.
type Node struct {
	Name string
	// Image is the build directory's name under Options.Images.
	Image     string
	MemoryMiB int
	// DiskMiB sizes the VM's disk (0: the image's size); the data
	// partition fills what the image does not use.
	DiskMiB int
	MAC     string
	Addr    netip.Addr
}

// Nodes are the lab's VMs: the sizes issue 5 asks to work.
var Nodes = []Node{
	{Name: "data-a", Image: "kvm-node", MemoryMiB: 1024, DiskMiB: 2048, MAC: "52:54:00:77:00:11", Addr: netip.MustParseAddr("10.77.0.11")},
	{Name: "data-b", Image: "kvm-node", MemoryMiB: 1024, DiskMiB: 2048, MAC: "52:54:00:77:00:12", Addr: netip.MustParseAddr("10.77.0.12")},
	{Name: "arbiter", Image: "kvm-arbitrator", MemoryMiB: 512, DiskMiB: 1024, MAC: "52:54:00:77:00:13", Addr: netip.MustParseAddr("10.77.0.13")},
}

// ReadyLine is what a node prints on serial when it has booted.
const ReadyLine = "tandem: ready"

// Options say where the lab lives and what it boots.
type Options struct {
	// Dir holds the overlays, serial logs (NODE.log), lab.json and the
	// control socket. Required.
	Dir string
	// Images holds the builds, one directory per Node.Image. Required.
	Images string
	// Nodes defaults to Nodes.
	Nodes []Node
	// Logf receives the lab's progress; nil discards.
	Logf func(format string, args ...any)
}

// Lab is a running lab.
type Lab struct {
	opts  Options
	netns string
	sw    *Switch
	ctl   net.Listener

	mu  sync.Mutex
	vms map[string]*qemu.VM

	stateMu  sync.Mutex // serializes lab.json writes
	stopping bool       // no more lab.json writes

	stopOnce sync.Once
	stopped  chan struct{}
}

// ErrUnknownNode is returned for a node name the lab does not have.
var ErrUnknownNode = errors.New("no such node")

// Start creates the namespace and switch, starts the control socket and
// boots every node; it does not wait for them (see WaitReady). On error
// everything started is stopped.
func Start(ctx context.Context, o Options) (*Lab, error) {
	if o.Dir == "" || o.Images == "" {
		return nil, errors.New("lab: Options.Dir and Options.Images are required")
	}
	if o.Nodes == nil {
		o.Nodes = Nodes
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{opts: o, netns: fmt.Sprintf("tandem-lab-%d", os.Getpid()),
		vms: map[string]*qemu.VM{}, stopped: make(chan struct{})}
	if err := l.start(ctx); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	fixed := map[[6]byte]netip.Addr{}
	for _, n := range l.opts.Nodes {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("lab: node %s: mac: %w", n.Name, err)
		}
		fixed[[6]byte(mac)] = n.Addr
	}
	bits := Subnet.Bits()
	l.sw = newSwitch(&dhcpServer{server: HostAddr, mask: net.CIDRMask(bits, 32),
		mac: net.HardwareAddr{0x02, 0x77, 0, 0, 0, 1}, fixed: fixed}, l.opts.Logf)
	tap, err := hostPort(l.netns, "lab0", netip.PrefixFrom(HostAddr, bits).String())
	if err != nil {
		return fmt.Errorf("lab: host port: %w", err)
	}
	if err := l.sw.AddTapPort(HostPort, tap); err != nil {
		tap.Close()
		return err
	}
	if err := l.serveControl(); err != nil {
		return err
	}
	for _, n := range l.opts.Nodes {
		if err := l.boot(ctx, n); err != nil {
			return fmt.Errorf("lab: boot %s: %w", n.Name, err)
		}
	}
	return l.writeState()
}

// boot starts node n's VM on a fresh overlay over its image.
func (l *Lab) boot(ctx context.Context, n Node) error {
	base, err := imageFile(filepath.Join(l.opts.Images, n.Image))
	if err != nil {
		return err
	}
	disk := filepath.Join(l.opts.Dir, n.Name+".qcow2")
	os.Remove(disk)
	if err := qemu.Overlay(disk, base, n.DiskMiB); err != nil {
		return err
	}
	remote, err := l.sw.AddVMPort(n.Name)
	if err != nil {
		return err
	}
	vmDir := filepath.Join(l.opts.Dir, n.Name)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(l.opts.Dir, n.Name+".log"))
	if err != nil {
		return err
	}
	vm, err := qemu.Start(context.WithoutCancel(ctx), qemu.Config{
		Disk: disk, Firmware: qemu.BIOS, MemoryMiB: n.MemoryMiB, Dir: vmDir, Console: log,
		Link: &qemu.Link{Remote: remote, MAC: n.MAC},
		// Data nodes' cluster daemons need a watchdog that resets the VM.
		Watchdog: n.Image != "kvm-arbitrator",
	})
	if err != nil {
		log.Close()
		return err
	}
	go func() {
		vm.Wait(context.Background())
		log.Close()
		if l.writeState() == nil { // not while Stop kills it
			l.opts.Logf("lab: %s's QEMU (pid %d) has exited", n.Name, vm.PID())
		}
	}()
	l.mu.Lock()
	l.vms[n.Name] = vm
	l.mu.Unlock()
	l.opts.Logf("lab: %s booting (pid %d, %s, log %s)", n.Name, vm.PID(), n.Addr, log.Name())
	return nil
}

// imageFile returns a build's qcow2 disk, or its raw one.
func imageFile(dir string) (string, error) {
	m, err := image.ReadManifest(dir)
	if err != nil {
		return "", fmt.Errorf("%w (build it with tandem build)", err)
	}
	if p, err := m.Path(dir, image.KindQcow2); err == nil {
		return p, nil
	}
	return m.Path(dir, image.KindRaw)
}

// WaitReady waits until every node has printed ReadyLine, failing at once
// if one fails to boot or its QEMU ends.
func (l *Lab) WaitReady(ctx context.Context) error {
	errc := make(chan error, len(l.opts.Nodes))
	for _, n := range l.opts.Nodes {
		vm, err := l.VM(n.Name)
		if err != nil {
			return err
		}
		go func() {
			i, err := vm.WaitFor(ctx, 0, ReadyLine, "tandem: boot failed")
			if err == nil && !strings.Contains(vm.Line(i), ReadyLine) {
				err = fmt.Errorf("%s", vm.Line(i))
			}
			if err != nil {
				err = fmt.Errorf("lab: %s: %w", n.Name, err)
			} else {
				l.opts.Logf("lab: %s ready at %s", n.Name, n.Addr)
			}
			errc <- err
		}()
	}
	var errs []error
	for range l.opts.Nodes {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// VM returns node name's QEMU, for its console.
func (l *Lab) VM(name string) (*qemu.VM, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	vm, ok := l.vms[name]
	if !ok {
		return nil, fmt.Errorf("lab: %s: %w", name, ErrUnknownNode)
	}
	return vm, nil
}

// Netns returns the name of the namespace holding the host's port.
func (l *Lab) Netns() string { return l.netns }

// HostCommand returns a command that runs in the lab's namespace, where
// HostAddr is configured and every node is reachable.
func (l *Lab) HostCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.netns, name}, args...)...)
}

// Kill stops node name's QEMU at once with SIGKILL: a power cut.
func (l *Lab) Kill(name string) error {
	vm, err := l.VM(name)
	if err != nil {
		return err
	}
	vm.Kill()
	l.opts.Logf("lab: %s killed", name)
	return l.writeState()
}

// Partition cuts the named nodes (and the host, if HostPort is named) off
// from the rest: no frame crosses between the two sides, frames within a
// side pass. It replaces any earlier partition.
func (l *Lab) Partition(names ...string) error {
	if err := l.sw.Partition(names...); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.opts.Logf("lab: partitioned %v from the rest", names)
	return l.writeState()
}

// Heal removes the partition.
func (l *Lab) Heal() error {
	l.sw.Partition()
	l.opts.Logf("lab: healed")
	return l.writeState()
}

// Done is closed when the lab has stopped.
func (l *Lab) Done() <-chan struct{} { return l.stopped }

// Stop kills every VM, closes the switch and control socket, removes the
// namespace and lab.json. Serial logs and overlays stay in Dir.
func (l *Lab) Stop() error {
	var err error
	l.stopOnce.Do(func() {
		l.stateMu.Lock()
		l.stopping = true
		l.stateMu.Unlock()
		l.mu.Lock()
		for _, vm := range l.vms {
			vm.Kill()
		}
		l.mu.Unlock()
		if l.ctl != nil {
			l.ctl.Close()
		}
		if l.sw != nil {
			l.sw.Close()
		}
		err = removeNetns(l.netns)
		os.Remove(filepath.Join(l.opts.Dir, stateFile))
		close(l.stopped)
	})
	return err
}
