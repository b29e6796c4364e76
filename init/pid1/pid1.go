// Package pid1 is tandem's init: it mounts the kernel file systems, loads
// the hardware profile's modules, finds its disk (creating the data
// partition on first boot), mounts perm and the boot partition, supervises
// the node's services, reaps every process, marks a new A/B slot good once
// the node is ready (or reverts to the other slot if its boot fails), and
// shuts down cleanly on the ACPI power button or on request.
package pid1

import (
	"context"
	"os"
	"strings"

	"tandem/init/settings"
	"tandem/init/supervise"
	"tandem/internal/nodeimage"
	"tandem/internal/sysinit"
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
	// consoleHash is console.password of the node config (applyConsole).
	consoleHash string
}

// steps are the boot, in order (sysinit.Run).
func (in *Init) steps() []sysinit.Step {
	return []sysinit.Step{
		{Name: "mount kernel file systems", Do: in.mountEarly},
		{Name: "read image description", Do: in.readImage},
		{Name: "read settings", Do: in.readSettings},
		{Name: "open control socket", Optional: true, Do: in.serveControl},
		{Name: "load kernel modules", Optional: true, Do: in.loadModules},
		{Name: "watch power button", Optional: true, Do: in.watchPowerButton},
		{Name: "set host name", Optional: true, Do: in.setHostname},
		{Name: "bring up loopback", Do: in.loopbackUp},
		{Name: "find boot disk", Do: in.findDisk},
		{Name: "create data partition", Optional: true, Do: in.ensureDataPartition},
		{Name: "mount boot and perm", Do: in.mountDisk},
		{Name: "move seed files into perm", Do: in.moveSeed},
		{Name: "re-read settings with perm", Do: in.readSettings},
		{Name: "apply the console password", Optional: true, Do: in.applyConsole},
		{Name: "start services", Do: in.startServices},
		{Name: "wait for services", Do: in.waitServices},
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
	failed := sysinit.Run(ctx, in.steps(), in.log.Logf)
	if failed != nil {
		in.bootFailed(failed)
	} else {
		in.ready()
	}
	in.powerDown(<-in.shutdown)
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
