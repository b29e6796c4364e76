// Package pid1 is tandem's init: it mounts the kernel file systems, loads
// the hardware profile's modules, finds its disk (creating the data
// partition on first boot), mounts perm and the boot partition, supervises
// the node's services, reaps every process, marks a new A/B slot good once
// the node is ready (or reverts to the other slot if its boot fails), and
// shuts down cleanly on the ACPI power button or on request.
package pid1

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"tandem/init/settings"
	"tandem/init/supervise"
	"tandem/internal/nodeimage"
)

// Init is the state of PID 1 through the boot.
type Init struct {
	log      *Log
	image    *nodeimage.Config
	settings *settings.Set
	cmdline  string
	slot     string // booted A/B slot, "" for PXE
	disk     *bootDisk
	sup      *supervise.Supervisor
	shutdown chan string // "poweroff" or "reboot"
}

// step is one stage of the boot, run in order by run.
type step struct {
	name string
	// optional steps log their failure and the boot goes on.
	optional bool
	do       func(ctx context.Context) error
}

func (s step) String() string { return s.name }

func (in *Init) steps() []step {
	return []step{
		{name: "mount kernel file systems", do: in.mountEarly},
		{name: "read image description", do: in.readImage},
		{name: "read settings", do: in.readSettings},
		{name: "open control socket", optional: true, do: in.serveControl},
		{name: "load kernel modules", optional: true, do: in.loadModules},
		{name: "watch power button", optional: true, do: in.watchPowerButton},
		{name: "set host name", optional: true, do: in.setHostname},
		{name: "bring up loopback", do: in.loopbackUp},
		{name: "find boot disk", do: in.findDisk},
		{name: "create data partition", optional: true, do: in.ensureDataPartition},
		{name: "mount boot and perm", do: in.mountDisk},
		{name: "move seed files into perm", do: in.moveSeed},
		{name: "re-read settings with perm", do: in.readSettings},
		{name: "start services", do: in.startServices},
		{name: "wait for services", do: in.waitServices},
	}
}

// Main runs the boot and then serves until poweroff or reboot. It never
// returns: PID 1 must not exit.
func Main() {
	in := &Init{log: NewLog(os.Stdout, 2000), shutdown: make(chan string, 1)}
	ctx := context.Background()
	go in.reap()
	go in.handleSignals()
	in.log.Printf("tandem: init starting")
	failed := in.runSteps(ctx)
	if failed != nil {
		in.bootFailed(failed)
	} else {
		in.ready()
	}
	in.powerDown(<-in.shutdown)
}

func (in *Init) runSteps(ctx context.Context) error {
	for _, s := range in.steps() {
		start := time.Now()
		err := s.do(ctx)
		switch {
		case err == nil:
			in.log.Logf("%s: ok (%s)", s, time.Since(start).Round(time.Millisecond))
		case s.optional:
			in.log.Logf("%s: %v (going on)", s, err)
		default:
			in.log.Logf("%s: FAILED: %v", s, err)
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// ready prints the marker tests and admins wait for and marks a trial slot
// good.
func (in *Init) ready() {
	up := "?"
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		up = strings.Fields(string(b))[0]
	}
	in.log.Printf("tandem: ready (slot %s, %s s after kernel start)", in.slotName(), up)
	if err := in.markGood(); err != nil {
		in.log.Logf("mark slot %s good: %v", in.slot, err)
	}
}

// bootFailed handles a failed required step: a slot on trial is given up
// (the other one boots next); a slot already known good stays up for
// rescue rather than rebooting in a loop.
func (in *Init) bootFailed(err error) {
	in.log.Printf("tandem: boot failed: %v", err)
	if !in.onTrial() {
		in.log.Logf("slot %s is marked good: staying up for rescue", in.slotName())
		return
	}
	if rerr := in.revert(); rerr != nil {
		in.log.Logf("revert slot %s: %v (GRUB's try count will fall back)", in.slot, rerr)
	}
	in.shutdown <- "reboot"
}

func (in *Init) slotName() string {
	if in.slot == "" {
		return "none (PXE)"
	}
	return in.slot
}
