package watchdog

import (
	"fmt"
	"os"
	"strings"
	"time"

	"tandem/lab/vmtest"
)

// This file is the other half of TestGuestReset: the same test binary,
// built static, is /init of a QEMU guest with Debian's kernel and an
// emulated i6300esb. It drives /dev/watchdog through Device and says on
// the console what it did; the host watches whether the guest survives.

const (
	guestTimeout = 5 * time.Second
	// guestPetFor is several timeouts of petting once a second.
	guestPetFor = 4 * guestTimeout
	// guestClosedFor is how long the guest idles after a magic close.
	guestClosedFor = 3 * guestTimeout
	// guestHangFor is how long a hung guest waits for the reset before it
	// says it was not reset.
	guestHangFor = 60 * time.Second
)

// Console marks, each on a line of its own after guestMark.
const (
	guestMark         = "TANDEM-WATCHDOG "
	guestMarkPetted   = "petted"
	guestMarkDisarmed = "disarmed"
	guestMarkClosed   = "alive-after-close"
	guestMarkHung     = "hung"
	guestMarkNotReset = "not-reset"
	guestMarkError    = "error"
)

// guestMain runs as PID 1 in the guest. Unless the watchdog resets the
// guest first, it powers it off at the end.
func guestMain() {
	if err := guestRun(); err != nil {
		guestSay(guestMarkError, "%v", err)
	}
	vmtest.PowerOff()
}

func guestRun() error {
	if err := vmtest.Init(); err != nil {
		return err
	}
	d := &Device{Path: "/dev/watchdog"}
	if err := d.Arm(guestTimeout); err != nil {
		return err
	}
	identity, _ := os.ReadFile("/sys/class/watchdog/watchdog0/identity")
	guestSay("armed", "%s, timeout %v", strings.TrimSpace(string(identity)), guestTimeout)
	start := time.Now()
	for time.Since(start) < guestPetFor {
		if err := d.Pet(); err != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	guestSay(guestMarkPetted, "for %v, once a second", time.Since(start).Round(time.Second))
	if err := d.Disarm(); err != nil {
		return err
	}
	guestSay(guestMarkDisarmed, "magic close")
	time.Sleep(guestClosedFor)
	guestSay(guestMarkClosed, "%v after the magic close", guestClosedFor)
	if err := d.Arm(guestTimeout); err != nil {
		return err
	}
	guestSay(guestMarkHung, "armed again, timeout %v, and no more petting", guestTimeout)
	time.Sleep(guestHangFor)
	guestSay(guestMarkNotReset, "still running %v after the last pet", guestHangFor)
	return nil
}

func guestSay(mark, format string, args ...any) {
	fmt.Printf("\n%s%s %s\n", guestMark, mark, fmt.Sprintf(format, args...))
}
