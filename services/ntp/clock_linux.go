package ntp

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the clock the service disciplines. Host tests use a fake;
// on a node (or in a QEMU guest) it is SystemClock.
type Clock interface {
	Now() time.Time
	// Step moves the clock by d at once.
	Step(d time.Duration) error
	// Slew has the kernel move the clock by d gradually.
	Slew(d time.Duration) error
}

// SystemClock is the kernel's clock (needs CAP_SYS_TIME).
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// Step adds d to CLOCK_REALTIME in one go (adjtimex ADJ_SETOFFSET).
func (SystemClock) Step(d time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO}
	sec, nsec := int64(d/time.Second), int64(d%time.Second)
	if nsec < 0 { // the kernel wants 0 <= usec/nsec < 1s
		sec--
		nsec += int64(time.Second)
	}
	tx.Time.Sec, tx.Time.Usec = sec, nsec
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("step clock by %v: %w", d, err)
	}
	return nil
}

// maxSlew is what the kernel's single-shot adjustment takes (adjtime's
// limit is far larger, but the phase-locked loop is capped at 0.5 s).
const maxSlew = 500 * time.Millisecond

// Slew starts a gradual adjustment by d (capped at ±0.5 s per call; the
// next poll slews the rest) and marks the clock synchronised for the kernel.
func (SystemClock) Slew(d time.Duration) error {
	d = max(min(d, maxSlew), -maxSlew)
	tx := unix.Timex{
		Modes:  unix.ADJ_OFFSET | unix.ADJ_NANO | unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Offset: int64(d),
		Status: unix.STA_PLL,
	}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("slew clock by %v: %w", d, err)
	}
	return nil
}
