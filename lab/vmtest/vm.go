package vmtest

import (
	"context"
	"strings"
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
	// Args are added to QEMU's command line (devices, networks, ...).
	Args []string
}

// Event is a QMP event QEMU sent.
type Event = qemu.Event

// VM is a running guest. QEMU runs with -no-reboot, so a guest reset or
// power-off ends it; it dies with the test process and is killed (by its
// PID) when the test ends.
type VM struct {
	// Started is when QEMU was started.
	Started time.Time

	vm    *qemu.VM
	lines chan string
	quit  chan struct{}
}

// Start boots the kernel with the initramfs (its /init the test binary)
// with lab/qemu, the serial console on QEMU's stdout.
func Start(ctx context.Context, t testing.TB, c Config) *VM {
	t.Helper()
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	v := &VM{Started: time.Now(), lines: make(chan string), quit: make(chan struct{})}
	var err error
	v.vm, err = qemu.Start(ctx, qemu.Config{
		Kernel: c.Kernel.Vmlinuz, Initrd: c.Initrd, Append: "console=ttyS0 quiet panic=-1 rdinit=/init",
		MemoryMiB: mem, NoReboot: true, Args: c.Args,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(v.quit)
		v.vm.Kill()
	})
	go v.feed()
	return v
}

// feed sends the console's lines to Lines until QEMU has exited and every
// line is sent.
func (v *VM) feed() {
	defer close(v.lines)
	for i := 0; ; i++ {
		if _, err := v.vm.WaitFor(context.Background(), i, ""); err != nil {
			return // exited, and no line is left
		}
		select {
		case v.lines <- v.vm.Line(i):
		case <-v.quit:
			return
		}
	}
}

// Lines returns the serial console, line by line; it is closed when QEMU
// exits.
func (v *VM) Lines() <-chan string { return v.lines }

// Wait waits for QEMU to exit.
func (v *VM) Wait() error { return v.vm.Wait(context.Background()) }

// Serial returns the whole console so far.
func (v *VM) Serial() string { return strings.Join(v.vm.Lines(), "\n") + "\n" }

// Events returns the QMP events so far.
func (v *VM) Events() []Event { return v.vm.Events() }

// Monitor runs one HMP command (e.g. "set_link nic0 off").
func (v *VM) Monitor(cmd string) error { return v.vm.Monitor(cmd) }
