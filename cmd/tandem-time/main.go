// Command tandem-time is the node's NTP client: it steps the clock at
// boot when it is far off, slews it afterwards, and publishes whether the
// clock is synchronised, and its offset, in a status file the cluster
// daemon reads before it grants leases.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"tandem/internal/nodeconfig"
	"tandem/internal/service"
	"tandem/services/ntp"
)

const usage = `usage: tandem-time -config PATH [-status PATH] [-set-clock=false]

Polls time.servers of the node config, steps the clock once at boot when
it is off by more than time.step_threshold, slews it afterwards, and writes
its status (synchronised, offset, server) as JSON to -status after every
poll. Speaks sd_notify (READY after the first poll, WATCHDOG, STATUS).
Setting the clock needs CAP_SYS_TIME.

`

func main() { service.Main("tandem-time", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("tandem-time", usage, stderr)
	configPath := fs.String("config", "", "node config file (required)")
	statusPath := fs.String("status", ntp.DefaultStatusPath, "status file written after every poll (its directory is the daemon's own: PID 1 makes it for the daemon's user)")
	setClock := fs.Bool("set-clock", true, "discipline the system clock; false only measures")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("-config is required, and no arguments are")
	}
	cfg, err := nodeconfig.LoadFile(*configPath)
	if err != nil {
		return err
	}
	log := service.NewLogger(stderr, "time")
	var clock ntp.Clock = ntp.SystemClock{}
	if !*setClock {
		clock = measureOnly{}
	}
	svc := ntp.New(ntp.Config{
		Servers: cfg.Time.Servers, StepThreshold: cfg.Time.StepThreshold, PollInterval: cfg.Time.PollInterval,
		MaxOffset: cfg.Time.MaxOffset, Clock: clock, Logger: log,
	})
	if len(cfg.Time.Servers) == 0 {
		log.Warn("no time.servers configured: the clock stays unsynchronised")
	}
	n := service.Notifier{Log: log}
	ready := false
	wd := n.Watchdog(ctx)
	polls := make(chan ntp.Status)
	go func() {
		err := svc.Run(ctx, func(st ntp.Status) {
			select {
			case polls <- st:
			case <-ctx.Done():
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Error("ntp", "err", err)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			n.Send("STOPPING=1")
			return nil
		case <-wd:
			n.Send("WATCHDOG=1")
		case st := <-polls:
			if err := writeStatus(*statusPath, st); err != nil {
				log.Error("status", "err", err)
			}
			if !ready {
				n.Ready(st.String())
				ready = true
			} else {
				n.Status(st.String())
			}
		}
	}
}

// measureOnly is a Clock that never changes the system clock.
type measureOnly struct{}

func (measureOnly) Now() time.Time             { return time.Now() }
func (measureOnly) Step(d time.Duration) error { return nil }
func (measureOnly) Slew(d time.Duration) error { return nil }

// writeStatus writes the status atomically.
func writeStatus(path string, st ntp.Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".time.json.*")
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write status %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write status %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
