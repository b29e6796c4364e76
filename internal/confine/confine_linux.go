package confine

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Limits say what a confined process may keep.
type Limits struct {
	// Keep are the capabilities (unix.CAP_*) left in the bounding set:
	// the most the process and anything it execs can ever hold. Every
	// other capability is dropped from it.
	Keep []uintptr `json:"keep"`
}

// Mask is Keep as a bit mask, in the form of /proc/PID/status's Cap lines.
func (l Limits) Mask() uint64 {
	var m uint64
	for _, c := range l.Keep {
		m |= 1 << c
	}
	return m
}

// ErrPdeathsig: a confined process cannot have a parent-death signal,
// because its parent is the thread that forked it, which exits at once.
var ErrPdeathsig = errors.New("confine: Pdeathsig cannot be used: the forking thread exits at once")

// StartProcess is os.StartProcess for a process confined by l: it starts
// with no_new_privs and with a bounding set of l.Keep only (so a root
// child holds at most l.Keep after its exec); attr.Sys may add a
// Credential and AmbientCaps (a subset of l.Keep) as usual. It needs
// CAP_SETPCAP.
func StartProcess(name string, argv []string, attr *os.ProcAttr, l Limits) (*os.Process, error) {
	if attr.Sys != nil && attr.Sys.Pdeathsig != 0 {
		return nil, ErrPdeathsig
	}
	type result struct {
		p   *os.Process
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, restricted for good, ends with
		// this goroutine instead of going back to the scheduler. (The
		// runtime creates no other thread from a locked one.)
		runtime.LockOSThread()
		if err := restrictThread(l.Mask()); err != nil {
			done <- result{nil, err}
			return
		}
		p, err := os.StartProcess(name, argv, attr)
		done <- result{p, err}
	}()
	r := <-done
	return r.p, r.err
}

// restrictThread confines the calling thread: bounding set cut to keep,
// ambient cleared, inheritable cut to keep, no_new_privs set.
func restrictThread(keep uint64) error {
	if err := dropBounding(keep); err != nil {
		return err
	}
	// Kernels before 4.3 have no ambient set (EINVAL): nothing to clear.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("confine: clear ambient capabilities: %w", err)
	}
	if err := cutInheritable(keep); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("confine: set no_new_privs: %w", err)
	}
	return nil
}

// dropBounding drops every capability the kernel knows but keep from the
// thread's bounding set; PR_CAPBSET_READ fails (EINVAL) past the last one.
func dropBounding(keep uint64) error {
	for c := 0; c < 64; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("confine: read bounding set: %w", err)
		}
		if in == 0 || keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("confine: drop %s from the bounding set: %w", Name(uintptr(c)), err)
		}
	}
	return nil
}

// cutInheritable removes from the thread's inheritable set what keep
// does not have (a root child's exec would otherwise carry it over).
func cutInheritable(keep uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("confine: capget: %w", err)
	}
	data[0].Inheritable &= uint32(keep)
	data[1].Inheritable &= uint32(keep >> 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("confine: capset: %w", err)
	}
	return nil
}
