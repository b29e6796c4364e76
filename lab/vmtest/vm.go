package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/lab/qemu"
)

// Config says how to boot a guest.
type Config struct {
	Kernel Kernel
	// Initrd is the initramfs, from Initramfs.
	Initrd string
	// MemoryMiB defaults to 512.
	MemoryMiB int
	// Args are added to QEMU's command line (devices, -nic none, ...).
	Args []string
	// QMP records QEMU's QMP events (WATCHDOG, SHUTDOWN, ...) for Events.
	QMP bool
}

// Event is a QMP event QEMU sent.
type Event = qemu.Event

// VM is a running guest. QEMU runs with -no-reboot, so a guest reset or
// power-off ends it; it dies with the test process and is killed (by its
// PID) when the test ends.
type VM struct {
	// Started is when QEMU was started.
	Started time.Time

	cmd   *exec.Cmd
	lines chan string
	quit  chan struct{}

	mu     sync.Mutex
	serial strings.Builder
	events []Event
}

// Start boots the kernel with the initramfs (its /init the test binary)
// under TCG (KVM hangs on the build machines), the serial console on
// QEMU's stdout.
func Start(ctx context.Context, t testing.TB, c Config) *VM {
	t.Helper()
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	args := []string{"-accel", "tcg", "-m", fmt.Sprint(mem), "-smp", "1", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-kernel", c.Kernel.Vmlinuz, "-initrd", c.Initrd,
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init"}
	var qmp string
	if c.QMP {
		qmp = filepath.Join(t.TempDir(), "qmp.sock")
		args = append(args, "-qmp", "unix:"+qmp+",server=on,wait=on")
	}
	vm := &VM{lines: make(chan string), quit: make(chan struct{})}
	vm.cmd = exec.CommandContext(ctx, "qemu-system-x86_64", append(args, c.Args...)...)
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := vm.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	vm.cmd.Stderr = vm.cmd.Stdout
	vm.Started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start qemu-system-x86_64: %v", err)
	}
	t.Cleanup(func() {
		close(vm.quit)
		vm.cmd.Process.Kill()
		_ = vm.cmd.Wait() // killed
	})
	if c.QMP {
		// wait=on: QEMU runs the guest only once the client is connected,
		// so no event is missed.
		if err := vm.watchQMP(qmp); err != nil {
			t.Fatalf("qemu qmp: %v", err)
		}
	}
	go vm.read(out)
	return vm
}

// Lines returns the serial console, line by line; it is closed when QEMU
// exits.
func (vm *VM) Lines() <-chan string { return vm.lines }

// Wait waits for QEMU to exit, after Lines is drained.
func (vm *VM) Wait() error { return vm.cmd.Wait() }

// Serial returns the whole console so far.
func (vm *VM) Serial() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.serial.String()
}

// Events returns the QMP events so far.
func (vm *VM) Events() []Event {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Event(nil), vm.events...)
}

func (vm *VM) read(r io.Reader) {
	defer close(vm.lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		vm.mu.Lock()
		vm.serial.WriteString(line + "\n")
		vm.mu.Unlock()
		select {
		case vm.lines <- line:
		case <-vm.quit:
			return
		}
	}
}

// watchQMP records QEMU's QMP events until QEMU exits.
func (vm *VM) watchQMP(path string) error {
	_, err := qemu.WatchQMP(path, 10*time.Second, func(e Event) {
		vm.mu.Lock()
		vm.events = append(vm.events, e)
		vm.mu.Unlock()
	})
	return err
}
