// Command tandem-network brings the node's network to its node config:
// links matched by name or MAC, active-backup bonds, VLANs, MTU, static
// addresses and routes, DHCPv4 leases kept and renewed, the host name,
// /etc/hosts and resolv.conf. It stays running to keep the leases, and
// releases them when stopped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/atomicfile"
	"tandem/internal/nodeconfig"
	"tandem/internal/service"
	"tandem/services/network"
)

const usage = `usage: tandem-network -config PATH [-etc DIR] [-status PATH] [-set-hostname=false] [-dhcp-wait DURATION]

Applies network of the node config over rtnetlink, keeps DHCP leases, and
writes DIR/hostname, DIR/hosts, DIR/resolv.conf. Speaks sd_notify: READY
once the static config is applied and every DHCP interface has a lease (or
-dhcp-wait passed), WATCHDOG, STATUS with each link's state. Writes the
link states as JSON to -status. Needs CAP_NET_ADMIN, CAP_NET_RAW (DHCP) and
CAP_SYS_ADMIN (host name).

`

func main() { service.Main("tandem-network", run) }

type flags struct {
	config, etc, status string
	setHostname         bool
	dhcpWait            time.Duration
}

func parse(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := service.FlagSet("tandem-network", usage, stderr)
	fs.StringVar(&f.config, "config", "", "node config file (required)")
	fs.StringVar(&f.etc, "etc", "/etc", "directory of hostname, hosts and resolv.conf")
	fs.StringVar(&f.status, "status", "/run/tandem/network.json", "link states, written after every change")
	fs.BoolVar(&f.setHostname, "set-hostname", true, "set the kernel's host name")
	fs.DurationVar(&f.dhcpWait, "dhcp-wait", 30*time.Second, "longest wait for the first leases before READY")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.config == "" || fs.NArg() > 0 {
		fs.Usage()
		return f, errors.New("-config is required, and no arguments are")
	}
	return f, nil
}

// fileHostname stands for the kernel's host name when -set-hostname=false.
type fileHostname struct{ name string }

func (f *fileHostname) Hostname() (string, error)     { return f.name, nil }
func (f *fileHostname) SetHostname(name string) error { f.name = name; return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parse(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := nodeconfig.LoadFile(f.config)
	if err != nil {
		return err
	}
	log := service.NewLogger(stderr, "network")
	opts := network.Options{
		Paths:  network.Paths{Hosts: filepath.Join(f.etc, "hosts"), Resolv: filepath.Join(f.etc, "resolv.conf"), Hostname: filepath.Join(f.etc, "hostname")},
		Logger: log,
	}
	if !f.setHostname {
		opts.Hostname = &fileHostname{}
	}
	svc, err := network.New(opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := svc.Close(); err != nil {
			log.Warn("close", "err", err)
		}
	}()

	events := make(chan network.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- svc.Run(ctx, cfg, func(e network.Event) { events <- e })
		close(events)
	}()
	n := service.Notifier{Log: log}
	return loop(ctx, svc, n, f, dhcpIfaces(cfg), events, done)
}

func dhcpIfaces(cfg *nodeconfig.Config) map[string]bool {
	m := map[string]bool{}
	for _, l := range cfg.Network.Links {
		if l.DHCP {
			m[l.Name] = true
		}
	}
	for _, b := range cfg.Network.Bonds {
		if b.DHCP {
			m[b.Name] = true
		}
	}
	for _, v := range cfg.Network.VLANs {
		if v.DHCP {
			m[v.Name] = true
		}
	}
	return m
}

func loop(ctx context.Context, svc *network.Service, n service.Notifier, f flags, waiting map[string]bool,
	events <-chan network.Event, done <-chan error) error {
	ready, applied := false, false
	wd := n.Watchdog(ctx)
	var readyTimer <-chan time.Time
	markReady := func() {
		if !ready {
			ready = true
			n.Ready(report(svc, f.status, n))
		}
	}
	stopping := ctx.Done()
	for {
		select {
		case <-stopping:
			n.Log.Info("stopping: releasing leases")
			n.Send("STOPPING=1")
			stopping = nil
		case err := <-done:
			// Run returns after ctx ends (leases released) or on an
			// Apply error.
			if stopping != nil && ctx.Err() != nil {
				n.Send("STOPPING=1") // done won the race with ctx.Done
			}
			return err
		case <-wd:
			n.Send("WATCHDOG=1")
		case <-readyTimer:
			markReady()
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			switch e.Kind {
			case network.EventApplied:
				applied = true
				readyTimer = time.After(f.dhcpWait)
			case network.EventLease:
				delete(waiting, e.Iface)
			}
			if applied && len(waiting) == 0 {
				markReady()
			}
			if ready {
				n.Status(report(svc, f.status, n))
			}
		}
	}
}

// report writes the link states to the status file and returns a one-line
// summary for STATUS=.
func report(svc *network.Service, path string, n service.Notifier) string {
	states, err := svc.State()
	if err != nil {
		n.Log.Error("link state", "err", err)
		return "link state unknown: " + err.Error()
	}
	b, _ := json.MarshalIndent(map[string]any{"links": states, "leases": svc.Leases()}, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
			n.Log.Error("status", "err", err)
		}
	}
	var parts []string
	for _, s := range states {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, "; ")
}
