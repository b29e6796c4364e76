package pid1

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tandem/internal/sysinit"

	"golang.org/x/sys/unix"
)

// reap collects every exited child: the services (handed to the
// supervisor) and orphans the kernel re-parented to PID 1.
func (in *Init) reap() {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	for {
		sysinit.Reap(func(pid int, ws syscall.WaitStatus) {
			if in.sup == nil || !in.sup.Exited(pid, ws) {
				in.log.Logf("reaped pid %d", pid)
			}
		})
		select {
		case <-sig:
		case <-time.After(time.Second):
		}
	}
}

// handleSignals maps the classic init signals to shutdowns: SIGTERM and
// SIGINT (Ctrl-Alt-Del) reboot, SIGUSR2 powers off (busybox init's
// convention, so u-root's and busybox's poweroff tools work).
func (in *Init) handleSignals() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
	for s := range sig {
		switch s {
		case syscall.SIGUSR2:
			in.request("poweroff")
		default:
			in.request("reboot")
		}
	}
}

// request asks for a shutdown; a second request while one runs is ignored.
func (in *Init) request(how string) {
	select {
	case in.shutdown <- how:
	default:
	}
}

// powerDown stops services in reverse order, unmounts the disk's file
// systems and powers off or reboots.
func (in *Init) powerDown(how string) {
	in.log.Printf("tandem: %s requested: stopping services", how)
	if in.sup != nil {
		in.sup.Stop()
	}
	unix.Sync()
	for _, m := range []string{"/perm", "/boot"} {
		if err := unix.Unmount(m, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			in.log.Logf("unmount %s: %v (remounting read-only)", m, err)
			if err := unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				in.log.Logf("remount %s read-only: %v", m, err)
			}
		}
	}
	unix.Sync()
	in.log.Printf("tandem: %s now", how)
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if how == "reboot" {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	for {
		if err := unix.Reboot(cmd); err != nil {
			in.log.Logf("%s: %v (retrying)", how, err)
		}
		time.Sleep(time.Second)
	}
}

const (
	evKey    = 1
	keyPower = 116
)

// watchPowerButton powers off when an input device named "Power Button"
// (the ACPI button driver's) reports KEY_POWER. It runs early in the boot,
// so a press during the boot is not lost.
func (in *Init) watchPowerButton(context.Context) error {
	devs := powerButtons()
	if len(devs) == 0 {
		return errors.New("no power button input device (modules button and evdev loaded?)")
	}
	for _, dev := range devs {
		f, err := os.Open(dev)
		if err != nil {
			return err
		}
		in.log.Logf("watching power button %s", dev)
		go in.readButton(f)
	}
	return nil
}

func powerButtons() []string {
	var out []string
	names, _ := filepath.Glob("/sys/class/input/event*/device/name")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.Contains(string(b), "Power Button") {
			ev := filepath.Base(filepath.Dir(filepath.Dir(n)))
			out = append(out, "/dev/input/"+ev)
		}
	}
	return out
}

func (in *Init) readButton(f *os.File) {
	defer f.Close()
	ev := make([]byte, 24) // struct input_event on 64-bit: timeval, type, code, value
	for {
		if _, err := f.Read(ev); err != nil {
			return
		}
		typ, code := binary.LittleEndian.Uint16(ev[16:]), binary.LittleEndian.Uint16(ev[18:])
		if typ == evKey && code == keyPower && binary.LittleEndian.Uint32(ev[20:]) == 1 {
			in.log.Logf("power button pressed")
			in.request("poweroff")
		}
	}
}
