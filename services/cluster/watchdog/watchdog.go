// Package watchdog arms, pets and disarms a watchdog that resets the node
// if the cluster daemon stops petting it: the Linux /dev/watchdog device
// (hardware or softdog) or, for tests on kernels without one, a recorder.
package watchdog

import (
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watchdog is what the cluster daemon needs from a watchdog.
type Watchdog interface {
	// Arm opens (if needed) and sets the timeout.
	Arm(timeout time.Duration) error
	// Pet resets the countdown.
	Pet() error
	// Disarm stops the countdown (magic close).
	Disarm() error
}

// Linux ioctls from <linux/watchdog.h>.
const (
	wdiocKeepalive  = 0x80045705
	wdiocSetTimeout = 0xc0045706
)

// Device is a Linux watchdog device such as /dev/watchdog.
type Device struct {
	Path string
	mu   sync.Mutex
	f    *os.File
}

// Arm opens the device and sets its timeout (rounded up to seconds).
func (d *Device) Arm(timeout time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("watchdog %s: open: %w", d.Path, err)
		}
		d.f = f
	}
	secs := int32((timeout + time.Second - 1) / time.Second)
	if err := ioctl(d.f, wdiocSetTimeout, unsafe.Pointer(&secs)); err != nil {
		return fmt.Errorf("watchdog %s: set timeout %ds: %w", d.Path, secs, err)
	}
	return nil
}

// Pet resets the countdown.
func (d *Device) Pet() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	var dummy int32
	if err := ioctl(d.f, wdiocKeepalive, unsafe.Pointer(&dummy)); err != nil {
		return fmt.Errorf("watchdog %s: keepalive: %w", d.Path, err)
	}
	return nil
}

// Disarm writes the magic 'V' and closes the device.
func (d *Device) Disarm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	_, werr := d.f.Write([]byte("V"))
	cerr := d.f.Close()
	d.f = nil
	if werr != nil {
		return fmt.Errorf("watchdog %s: magic close: %w", d.Path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("watchdog %s: close: %w", d.Path, cerr)
	}
	return nil
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// Recorder appends every call, with a timestamp, to a file. Tests read it
// to check that an owner armed the watchdog and petted it in time; it
// resets nothing.
type Recorder struct {
	Path string
	Now  func() time.Time
	mu   sync.Mutex
}

func (r *Recorder) record(format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	f, err := os.OpenFile(r.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("watchdog recorder %s: %w", r.Path, err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%d "+format+"\n", append([]any{now().UnixMilli()}, args...)...)
	return err
}

// Arm records "arm TIMEOUT".
func (r *Recorder) Arm(timeout time.Duration) error { return r.record("arm %v", timeout) }

// Pet records "pet".
func (r *Recorder) Pet() error { return r.record("pet") }

// Disarm records "disarm".
func (r *Recorder) Disarm() error { return r.record("disarm") }

// Open returns the watchdog a config names: a device path, "record:PATH"
// for a Recorder, or "none".
func Open(spec string) (Watchdog, error) {
	switch {
	case spec == "none":
		return nil, nil
	case len(spec) > 7 && spec[:7] == "record:":
		return &Recorder{Path: spec[7:]}, nil
	case len(spec) > 0 && spec[0] == '/':
		return &Device{Path: spec}, nil
	}
	return nil, fmt.Errorf("watchdog %q: want a device path, record:PATH or none", spec)
}
