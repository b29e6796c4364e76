// Package qemu is tandem's one QEMU launcher: it boots images (disk or
// network boot) for the lab, e2e tests, benchmarks and `tandem boot`, and a
// kernel with an initramfs for lab/vmtest's guests. Software emulation only
// (TCG; KVM is not used), the
// serial console captured line by line, the monitor on a socket for ACPI
// power-off, and networking only on QEMU's own isolated user network or
// on a UDP link over loopback to a switch in the host process (Link).
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firmware kinds.
const (
	BIOS = "bios"
	UEFI = "uefi"
)

// OVMF files from Debian's ovmf package.
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Config says what to boot.
type Config struct {
	// Disk is a disk image (raw or qcow2) attached as virtio; the VM writes
	// to it, so tests pass an overlay (see Overlay).
	Disk string
	// Firmware is BIOS (SeaBIOS) or UEFI (OVMF).
	Firmware string
	// Kernel, Initrd and Append boot a kernel directly (no firmware boot).
	Kernel, Initrd, Append string
	// TFTPDir and BootFile network-boot from QEMU's built-in DHCP/TFTP
	// (iPXE in the NIC's option ROM).
	TFTPDir, BootFile string
	// Net adds a virtio NIC on QEMU's user network with restrict=on: the
	// guest gets DHCP from QEMU and reaches nothing outside the VM.
	Net bool
	// Link, if set, connects a virtio NIC to a UDP socket on loopback
	// instead (QEMU's dgram netdev): every Ethernet frame goes to and comes
	// from Link.Remote, where a switch such as tandem/lab's runs.
	Link *Link
	// MemoryMiB defaults to 1024.
	MemoryMiB int
	// Watchdog adds an i6300esb watchdog.
	Watchdog bool
	// NoReboot makes a guest reboot (or a watchdog reset) end QEMU
	// instead; VM.ResetBy then says the guest asked for it. Under TCG a
	// guest reset in place can boot at a crawl: after one, the lab saw
	// the kernel's first page clears run at two seconds a page for
	// minutes (stores into pages that still held the last boot's
	// translated code), so the lab starts a fresh QEMU instead.
	NoReboot bool
	// Console, if set, also receives everything the serial port prints.
	Console io.Writer
	// Dir holds the VM's sockets and firmware variables; default a temp dir.
	Dir string
	// Args are added to QEMU's command line (a test guest's devices).
	Args []string
}

// Link is a NIC whose frames travel as UDP datagrams between QEMU and a
// switch on loopback. QEMU binds an ephemeral port on 127.0.0.1; the
// switch learns it from the first frame the guest sends.
type Link struct {
	// Remote is the switch's port for this VM; it must be a loopback
	// address, so no frame can leave the machine.
	Remote netip.AddrPort
	// MAC is the NIC's address, e.g. 52:54:00:77:00:11.
	MAC string
}

func (l *Link) args() ([]string, error) {
	if !l.Remote.Addr().Is4() || !l.Remote.Addr().IsLoopback() {
		return nil, fmt.Errorf("qemu link: remote %s: want an IPv4 loopback address", l.Remote)
	}
	if _, err := net.ParseMAC(l.MAC); err != nil {
		return nil, fmt.Errorf("qemu link: mac %q: %w", l.MAC, err)
	}
	nd := fmt.Sprintf("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=0,"+
		"remote.type=inet,remote.host=%s,remote.port=%d", l.Remote.Addr(), l.Remote.Port())
	return []string{"-netdev", nd, "-device", "virtio-net-pci,netdev=n0,mac=" + l.MAC}, nil
}

// VM is a running QEMU.
type VM struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	monitor string
	dir     string
	ownDir  bool
	qmpDone chan struct{}

	mu     sync.Mutex
	lines  []string
	cond   *sync.Cond
	done   chan struct{}
	err    error
	reset  string // what reset the guest, from QMP's events
	events []Event
}

// Start boots a VM.
func Start(ctx context.Context, c Config) (*VM, error) {
	vm := &VM{done: make(chan struct{}), qmpDone: make(chan struct{}), dir: c.Dir}
	vm.cond = sync.NewCond(&vm.mu)
	if vm.dir == "" {
		d, err := os.MkdirTemp("", "tandem-vm-")
		if err != nil {
			return nil, err
		}
		vm.dir, vm.ownDir = d, true
	}
	vm.monitor = filepath.Join(vm.dir, "monitor.sock")
	args, err := c.args(vm.dir, vm.monitor, true)
	if err != nil {
		return nil, err
	}
	vm.cmd = exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	vm.cmd.Stderr = os.Stderr
	// QEMU dies with its parent, so a killed test leaves no VM behind.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := vm.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if vm.stdin, err = vm.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu-system-x86_64: %w (make deps installs qemu-system-x86)", err)
	}
	// QEMU starts the guest only once the QMP client is connected
	// (wait=on), so no event is missed.
	qmpDone, err := WatchQMP(filepath.Join(vm.dir, "qmp.sock"), time.Minute, vm.event()) // generous: a busy machine
	if err != nil {
		vm.cmd.Process.Kill()
		vm.cmd.Wait()
		if vm.ownDir {
			os.RemoveAll(vm.dir)
		}
		return nil, fmt.Errorf("qemu qmp: %w", err)
	}
	go func() { <-qmpDone; close(vm.qmpDone) }()
	go vm.read(out, c.Console)
	return vm, nil
}

// Command returns the QEMU command for c, its firmware variables and
// monitor socket in dir, for a caller that wires the console itself.
func Command(ctx context.Context, c Config, dir, monitor string) (*exec.Cmd, error) {
	args, err := c.args(dir, monitor, false)
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, "qemu-system-x86_64", args...), nil
}

// args is c's command line; qmpWait makes QEMU wait for a QMP client
// before it runs the guest.
func (c Config) args(dir, monitor string, qmpWait bool) ([]string, error) {
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	wait := "off"
	if qmpWait {
		wait = "on"
	}
	a := []string{"-accel", "tcg", "-m", fmt.Sprint(mem), "-smp", "1",
		"-nographic", "-no-user-config", "-nodefaults", "-serial", "stdio",
		"-monitor", "unix:" + monitor + ",server,nowait",
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=" + wait,
		// Entropy from the host, as a KVM/Proxmox VM with VirtIO RNG has.
		"-device", "virtio-rng-pci"}
	if c.Firmware == UEFI {
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		b, err := os.ReadFile(OVMFVars)
		if err != nil {
			return nil, fmt.Errorf("OVMF: %w (make deps installs ovmf)", err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			return nil, err
		}
		a = append(a, "-machine", "q35",
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	if c.Disk != "" {
		format := "raw"
		if strings.HasSuffix(c.Disk, ".qcow2") {
			format = "qcow2"
		}
		a = append(a, "-drive", "file="+c.Disk+",if=virtio,format="+format+",cache=unsafe")
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Append)
	}
	if c.Link != nil {
		if c.Net || c.TFTPDir != "" {
			return nil, errors.New("qemu: Link excludes Net and TFTPDir")
		}
		la, err := c.Link.args()
		if err != nil {
			return nil, err
		}
		a = append(a, la...)
	}
	if c.Net && c.TFTPDir == "" {
		a = append(a, "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0")
	}
	if c.TFTPDir != "" {
		a = append(a, "-netdev", "user,id=n0,restrict=on,tftp="+c.TFTPDir+",bootfile="+c.BootFile,
			"-device", "virtio-net-pci,netdev=n0", "-boot", "n")
	}
	if c.Watchdog {
		a = append(a, "-device", "i6300esb", "-action", "watchdog=reset")
	}
	if c.NoReboot {
		a = append(a, "-no-reboot")
	}
	return append(a, c.Args...), nil
}

func (vm *VM) read(r io.Reader, console io.Writer) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if console != nil {
				_, _ = io.WriteString(console, line) // a mirror: the lines are kept either way
			}
			vm.mu.Lock()
			vm.lines = append(vm.lines, strings.TrimRight(line, "\r\n"))
			vm.cond.Broadcast()
			vm.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	err := vm.cmd.Wait()
	select { // QMP's socket closes with QEMU: its last events are in
	case <-vm.qmpDone:
	case <-time.After(2 * time.Second):
	}
	vm.mu.Lock()
	vm.err = err
	close(vm.done)
	vm.cond.Broadcast()
	vm.mu.Unlock()
}

// ErrExited is returned by WaitFor when QEMU ends before the line shows.
var ErrExited = errors.New("qemu exited")

// WaitFor waits until a console line at or after index from contains one
// of wants and returns its index; from lets a caller wait for the next
// occurrence.
func (vm *VM) WaitFor(ctx context.Context, from int, wants ...string) (int, error) {
	stop := context.AfterFunc(ctx, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for i := from; ; {
		for ; i < len(vm.lines); i++ {
			for _, want := range wants {
				if strings.Contains(vm.lines[i], want) {
					return i, nil
				}
			}
		}
		select {
		case <-vm.done:
			return -1, fmt.Errorf("waiting for %q: %w", wants, ErrExited)
		default:
		}
		if ctx.Err() != nil {
			return -1, fmt.Errorf("waiting for %q: %w", wants, ctx.Err())
		}
		vm.cond.Wait()
	}
}

// Lines returns the console lines so far.
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// Line returns console line i.
func (vm *VM) Line(i int) string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.lines[i]
}

// Send types s on the serial console.
func (vm *VM) Send(s string) error {
	_, err := io.WriteString(vm.stdin, s)
	return err
}

// Monitor runs one HMP command (e.g. "system_powerdown").
func (vm *VM) Monitor(cmd string) error {
	c, err := net.DialTimeout("unix", vm.monitor, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qemu monitor: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// QEMU's monitor drops input sent before it has shown its prompt.
	if err := readPrompt(c); err != nil {
		return fmt.Errorf("qemu monitor: %w", err)
	}
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return err
	}
	return readPrompt(c)
}

// readPrompt reads the monitor's output up to its "(qemu) " prompt.
func readPrompt(r io.Reader) error {
	var seen []byte
	buf := make([]byte, 512)
	for !strings.Contains(string(seen), "(qemu) ") {
		n, err := r.Read(buf)
		if err != nil {
			return err
		}
		seen = append(seen[max(0, len(seen)-64):], buf[:n]...)
	}
	return nil
}

// Wait waits for QEMU to exit.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PID returns QEMU's process ID.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Exited reports whether QEMU has ended.
func (vm *VM) Exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// event returns the QMP event handler: it records every event and what
// reset the machine (with NoReboot, a reset is a SHUTDOWN event):
// "watchdog" after a WATCHDOG event with action reset, "guest" for the
// guest's own, "reset button" for the monitor's.
func (vm *VM) event() func(Event) {
	watchdog := false
	return func(e Event) {
		vm.mu.Lock()
		vm.events = append(vm.events, e)
		vm.mu.Unlock()
		var d struct{ Action, Reason string }
		if json.Unmarshal(e.Data, &d) != nil {
			return // not an event this reads
		}
		switch {
		case e.Event == "WATCHDOG" && d.Action == "reset":
			watchdog = true
		case e.Event == "SHUTDOWN" && d.Reason == "guest-reset" && watchdog:
			vm.setReset("watchdog")
		case e.Event == "SHUTDOWN" && d.Reason == "guest-reset":
			vm.setReset("guest")
		case e.Event == "SHUTDOWN" && d.Reason == "host-qmp-system-reset":
			vm.setReset("reset button") // the monitor's system_reset
		}
	}
}

// Events returns the QMP events so far (WATCHDOG, SHUTDOWN, ...).
func (vm *VM) Events() []Event {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Event(nil), vm.events...)
}

func (vm *VM) setReset(by string) {
	vm.mu.Lock()
	vm.reset = by
	vm.mu.Unlock()
}

// ResetBy says why QEMU ended, once it has: "watchdog", "guest" or
// "reset button" when the machine was reset (a NoReboot VM ends then), ""
// otherwise (powered off, or killed).
func (vm *VM) ResetBy() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.reset
}

// Kill stops QEMU at once (by its PID) and removes its directory.
func (vm *VM) Kill() {
	if vm.cmd.Process != nil {
		vm.cmd.Process.Kill()
	}
	<-vm.done
	if vm.ownDir {
		os.RemoveAll(vm.dir)
	}
}

// Overlay creates a qcow2 overlay at path over base, sized sizeMiB (0:
// base's size), so a VM can write without touching the built image.
func Overlay(path, base string, sizeMiB int) error {
	format := "raw"
	if strings.HasSuffix(base, ".qcow2") {
		format = "qcow2"
	}
	args := []string{"create", "-q", "-f", "qcow2", "-b", base, "-F", format, path}
	if sizeMiB > 0 {
		args = append(args, fmt.Sprintf("%dM", sizeMiB))
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create overlay: %w: %s", err, out)
	}
	return nil
}
