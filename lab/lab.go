// Package lab runs tandem's three-VM lab: two data nodes and an arbitrator
// booted from built images under QEMU (TCG), joined by a switch in this
// process over UDP on loopback, with the host's port a TAP device in a
// network namespace of the lab's own, where an SNTP server serves the
// host's clock. Each node gets its own disk with optional seed files
// (its node.yaml) before its first boot. Tests use the lab in-process
// (Start, Kill, Boot, Reboot, Shutdown, Partition, Heal, Dial, Stop);
// `tandem lab` drives it from a shell through a control socket. Nothing
// touches the host's own network.
package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"tandem/lab/qemu"
	"tandem/services/cluster"
	"tandem/services/ntp"
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
	// Seed holds files for the node's seed directory (file name relative
	// to it -> content), written into its boot partition before its first
	// boot; its PID 1 moves them to /perm/tandem/NAME on that boot, so
	// "node.yaml" is the node's configuration (docs/image.md, "Seed
	// files"). Later boots (Boot, Reboot) do not write them again.
	Seed map[string][]byte
}

// Arbitrator reports whether the node boots the arbitrator's image.
func (n Node) Arbitrator() bool { return n.Image == "kvm-arbitrator" }

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
	// Dir holds the disks (NODE.raw), serial logs (NODE.log), lab.json
	// and the control socket. Required.
	Dir string
	// Images holds the builds, one directory per Node.Image. Required.
	Images string
	// Nodes defaults to Nodes.
	Nodes []Node
	// Logf receives the lab's progress; nil discards.
	Logf func(format string, args ...any)
	// BMCPasswords gives the data nodes named in it a BMC (bmc.go) that
	// takes BMCUser with that password.
	BMCPasswords map[string]string
}

// Lab is a running lab.
type Lab struct {
	opts  Options
	netns string
	sw    *Switch
	ctl   net.Listener
	ntp   *ntpConn

	mu    sync.Mutex
	bmcs  []*os.Process             // the BMCs' ipmi_sim
	vms   map[string]*qemu.VM       // the current (or last) QEMU of each node
	ports map[string]netip.AddrPort // each node's switch port, for QEMU
	boots map[string]int            // boots of each node so far

	bootMu sync.Mutex // one Boot at a time, none once Stop has begun

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
		vms: map[string]*qemu.VM{}, ports: map[string]netip.AddrPort{}, boots: map[string]int{},
		stopped: make(chan struct{})}
	if err := l.start(ctx); err != nil {
		_ = l.Stop() // the start's error is the one to report
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
	if err := l.startBMCs(); err != nil {
		return err
	}
	if err := l.serveTime(); err != nil {
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

// boot starts node n's VM on its disk, creating the disk (with n.Seed)
// and a new serial log on its first boot; a later boot keeps both (the
// log is appended to) and reuses n's switch port and MAC.
func (l *Lab) boot(ctx context.Context, n Node) error {
	disk := l.path(n.Name, ".raw")
	l.mu.Lock()
	remote, boots := l.ports[n.Name], l.boots[n.Name]
	l.mu.Unlock()
	logFlags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if boots == 0 {
		var err error
		if remote, err = l.firstBoot(n, disk); err != nil {
			return err
		}
		logFlags |= os.O_TRUNC
	}
	vmDir := filepath.Join(l.opts.Dir, n.Name)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(l.path(n.Name, ".log"), logFlags, 0o644)
	if err != nil {
		return err
	}
	if boots > 0 {
		fmt.Fprintf(log, "\n--- lab: %s boots again (boot %d) ---\n", n.Name, boots+1)
	}
	vm, err := qemu.Start(context.WithoutCancel(ctx), qemu.Config{
		Disk: disk, Firmware: qemu.BIOS, MemoryMiB: n.MemoryMiB, Dir: vmDir, Console: log,
		Link: &qemu.Link{Remote: remote, MAC: n.MAC},
		// Data nodes' cluster daemons need a watchdog that resets the VM.
		Watchdog: !n.Arbitrator(),
		// A reset starts a fresh QEMU (below): in place, TCG can take
		// minutes to boot the kernel again (qemu.Config.NoReboot).
		NoReboot: true,
	})
	if err != nil {
		log.Close()
		return err
	}
	if err := l.writePID(n.Name, vm.PID()); err != nil {
		vm.Kill()
		log.Close()
		return fmt.Errorf("lab: %s: %w", n.Name, err)
	}
	go func() {
		_ = vm.Wait(context.Background()) // how it ended is in ResetBy
		log.Close()
		if l.writeState() != nil { // Stop is killing it
			return
		}
		by := vm.ResetBy()
		if by == "" {
			l.opts.Logf("lab: %s's QEMU (pid %d) has exited", n.Name, vm.PID())
			return
		}
		// A reset is a power cycle, as on a server: the node boots again.
		l.opts.Logf("lab: %s was reset (by its %s); booting it in a fresh QEMU", n.Name, by)
		if err := l.Boot(n.Name); err != nil {
			l.opts.Logf("lab: %s: %v", n.Name, err)
		}
	}()
	l.mu.Lock()
	l.vms[n.Name] = vm
	l.ports[n.Name] = remote
	l.boots[n.Name]++
	l.mu.Unlock()
	l.opts.Logf("lab: %s booting (pid %d, %s, log %s)", n.Name, vm.PID(), n.Addr, log.Name())
	return nil
}

// firstBoot makes node n's disk and switch port and returns the port.
func (l *Lab) firstBoot(n Node, disk string) (netip.AddrPort, error) {
	start := time.Now()
	if err := createDisk(disk, l.opts.Images, n); err != nil {
		return netip.AddrPort{}, err
	}
	l.opts.Logf("lab: %s: disk %s made in %s (%d seed files)", n.Name, disk, time.Since(start).Round(time.Millisecond), len(n.Seed))
	return l.sw.AddVMPort(n.Name)
}

// path returns the lab's file for node name with extension ext: its disk
// (.raw) or serial log (.log).
func (l *Lab) path(name, ext string) string { return filepath.Join(l.opts.Dir, name+ext) }

// node returns the lab's node called name.
func (l *Lab) node(name string) (Node, error) {
	for _, n := range l.opts.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("lab: %s: %w", name, ErrUnknownNode)
}

// ErrNodeUp is returned by Boot for a node whose QEMU is running.
var ErrNodeUp = errors.New("node is up")

// Boot boots node name again, after Kill or Shutdown (or a crash), from
// its existing disk: perm and data keep what the last run wrote, no seed
// is written, the MAC and switch port are the same. Its serial log is
// appended to; VM(name) returns the new QEMU.
func (l *Lab) Boot(name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	l.bootMu.Lock()
	defer l.bootMu.Unlock()
	l.stateMu.Lock()
	stopping := l.stopping
	l.stateMu.Unlock()
	if stopping {
		return fmt.Errorf("lab: boot %s: %w", name, errStopping)
	}
	if vm, err := l.VM(name); err == nil && !vm.Exited() {
		return fmt.Errorf("lab: boot %s: %w (QEMU pid %d)", name, ErrNodeUp, vm.PID())
	}
	if err := l.boot(context.Background(), n); err != nil {
		return fmt.Errorf("lab: boot %s: %w", name, err)
	}
	return l.writeState()
}

// Reboot power-cycles node name: Kill, then Boot.
func (l *Lab) Reboot(name string) error {
	if err := l.Kill(name); err != nil {
		return err
	}
	return l.Boot(name)
}

// Shutdown presses node name's ACPI power button (QEMU's
// system_powerdown), on which its PID 1 stops the services, unmounts and
// powers off, and waits until QEMU has exited. If ctx ends first the VM is
// left running (Kill ends it). A node already down is not an error.
func (l *Lab) Shutdown(ctx context.Context, name string) error {
	vm, err := l.VM(name)
	if err != nil {
		return err
	}
	if vm.Exited() {
		return nil
	}
	if err := vm.Monitor("system_powerdown"); err != nil {
		return fmt.Errorf("lab: shutdown %s: %w", name, err)
	}
	l.opts.Logf("lab: %s: ACPI power button pressed", name)
	if err := vm.Wait(ctx); err != nil && ctx.Err() != nil {
		return fmt.Errorf("lab: shutdown %s: QEMU (pid %d) still running: %w", name, vm.PID(), err)
	}
	l.opts.Logf("lab: %s powered off", name)
	return l.writeState()
}

// WaitReady waits until each named node (every node if none is named)
// has printed ReadyLine since its last boot, failing at once if one fails
// to boot or its QEMU ends.
func (l *Lab) WaitReady(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		for _, n := range l.opts.Nodes {
			names = append(names, n.Name)
		}
	}
	errc := make(chan error, len(names))
	for _, name := range names {
		vm, err := l.VM(name)
		if err != nil {
			return err
		}
		go func() {
			i, err := vm.WaitFor(ctx, 0, ReadyLine, "tandem: boot failed")
			if err == nil && !strings.Contains(vm.Line(i), ReadyLine) {
				err = fmt.Errorf("%s", vm.Line(i))
			}
			if err != nil {
				err = fmt.Errorf("lab: %s: %w", name, err)
			} else {
				l.opts.Logf("lab: %s ready", name)
			}
			errc <- err
		}()
	}
	var errs []error
	for range names {
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

// CutReplication cuts the data nodes' replication link alone: the
// switch drops DRBD's TCP traffic (cluster.DRBDPort) and passes the rest,
// so the cluster's members still see each other. Heal mends it.
func (l *Lab) CutReplication() error {
	l.sw.BlockTCP(cluster.DRBDPort)
	l.opts.Logf("lab: replication link cut (TCP port %d dropped)", cluster.DRBDPort)
	return l.writeState()
}

// Heal removes the partition and mends the replication link.
func (l *Lab) Heal() error {
	if err := l.sw.Partition(); err != nil {
		return err
	}
	l.sw.BlockTCP()
	l.opts.Logf("lab: healed")
	return l.writeState()
}

// NTPPort is where the lab's SNTP server listens, on HostAddr.
const NTPPort = 123

// serveTime runs an SNTP server on HostAddr:123 in the lab's namespace,
// serving the host's clock, so the nodes' time service has a server
// (their node.yaml names 10.77.0.1) and synchronises instead of warning.
func (l *Lab) serveTime() error {
	pc, err := l.ListenPacket("udp4", netip.AddrPortFrom(HostAddr, NTPPort).String())
	if err != nil {
		return fmt.Errorf("lab: SNTP server: %w", err)
	}
	l.ntp = &ntpConn{PacketConn: pc, requests: map[string]int{}}
	go func() {
		if err := (ntp.Server{}).Serve(l.ntp); err != nil {
			l.opts.Logf("lab: SNTP server: %v", err)
		}
	}()
	return nil
}

// ntpConn is the SNTP server's socket; it counts each client's requests
// for Status.
type ntpConn struct {
	net.PacketConn
	mu       sync.Mutex
	requests map[string]int // client IP -> requests
}

func (c *ntpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if u, ok := from.(*net.UDPAddr); ok && err == nil {
		c.mu.Lock()
		c.requests[u.IP.String()]++
		c.mu.Unlock()
	}
	return n, from, err
}

// counts returns a copy of the request counts.
func (c *ntpConn) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.requests)
}

// Done is closed when the lab has stopped.
func (l *Lab) Done() <-chan struct{} { return l.stopped }

// Stop kills every VM, closes the switch and control socket, removes the
// namespace and lab.json. Serial logs and disks stay in Dir.
func (l *Lab) Stop() error {
	var err error
	l.stopOnce.Do(func() {
		l.bootMu.Lock() // no Boot between here and the kills
		l.stateMu.Lock()
		l.stopping = true
		l.stateMu.Unlock()
		l.mu.Lock()
		for _, vm := range l.vms {
			vm.Kill()
		}
		for _, p := range l.bmcs {
			_ = p.Kill() // gone already: nothing to stop
		}
		l.mu.Unlock()
		l.bootMu.Unlock()
		if l.ctl != nil {
			l.ctl.Close()
		}
		if l.ntp != nil {
			l.ntp.Close()
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
