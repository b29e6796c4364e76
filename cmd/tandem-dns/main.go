// Command tandem-dns is the node's split DNS server: authoritative for the
// cluster domain, a caching forwarder for the allowed networks, REFUSED
// for everyone else. It reloads the zone on SIGHUP and whenever the node
// config or the cluster view file changes, without dropping queries; the
// allowed networks and forwarders reload too.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"tandem/internal/atomicfile"
	"tandem/internal/nodeconfig"
	"tandem/internal/service"
	"tandem/services/dns"
)

const usage = `usage: tandem-dns -config PATH [-cluster PATH] [-watch DURATION]

Serves the cluster domain of the node config (SOA, NS, the service name's
A record -> VIP, MX -> the service name, one record per member) on
dns.listen, forwards other names to dns.forwarders with caching, for
loopback and dns.allow only. At most dns.max_upstream queries go upstream
at once; UDP answers are rate-limited per client (dns.rate_limit); zone
transfers are refused. Speaks sd_notify (READY, WATCHDOG, STATUS).
Reloads the zone, dns.allow, dns.forwarders and dns.open_resolver on SIGHUP
and when -config or -cluster change (dns.listen, dns.cache_size,
dns.max_upstream and dns.rate_limit need a restart).

`

func main() { service.Main("tandem-dns", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("tandem-dns", usage, stderr)
	configPath := fs.String("config", "", "node config file (required)")
	viewPath := fs.String("cluster", "", "cluster view JSON written by tandem-cluster (VIP and members); optional, may appear later")
	watch := fs.Duration("watch", 2*time.Second, "how often to look for changed files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("-config is required, and no arguments are")
	}
	log := service.NewLogger(stderr, "dns")
	d := &dnsd{configPath: *configPath, viewPath: *viewPath, log: log}
	cfg, zone, err := d.load()
	if err != nil {
		return err
	}
	scfg := dns.ConfigOf(cfg)
	scfg.Logger = log
	srv := dns.New(scfg, zone)
	pcs, lns, err := dns.Listen(cfg.DNS.Listen)
	if err != nil {
		return err
	}
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(serveCtx, pcs, lns) }()
	for _, pc := range pcs {
		log.Info("serving", "addr", pc.LocalAddr(), "domain", zone.Domain)
	}
	n := service.Notifier{Log: log}
	n.Ready(d.status(srv))
	return d.loop(ctx, srv, n, *watch, done)
}

type dnsd struct {
	configPath, viewPath string
	log                  *slog.Logger
	stamp                string
}

// load reads the node config and the view (absent is fine).
func (d *dnsd) load() (*nodeconfig.Config, dns.Zone, error) {
	cfg, err := nodeconfig.LoadFile(d.configPath)
	if err != nil {
		return nil, dns.Zone{}, err
	}
	if cfg.Cluster.Domain == "" {
		return nil, dns.Zone{}, fmt.Errorf("%s: cluster.domain: is required to serve DNS", d.configPath)
	}
	var view *dns.ClusterView
	if d.viewPath != "" {
		f, err := os.Open(d.viewPath)
		if err == nil {
			view, err = dns.LoadClusterView(f, d.viewPath)
			f.Close()
			if err != nil {
				return nil, dns.Zone{}, err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, dns.Zone{}, fmt.Errorf("cluster view: %w", err)
		}
	}
	d.stamp = d.fileStamp()
	return cfg, dns.ZoneOf(cfg, view), nil
}

// fileStamp changes when either file changes.
func (d *dnsd) fileStamp() string {
	return atomicfile.Stamp(d.configPath) + ";" + atomicfile.Stamp(d.viewPath)
}

func (d *dnsd) status(srv *dns.Server) string {
	st := srv.Stats()
	return fmt.Sprintf("serving, zone serial %d, %d queries (%d SERVFAIL at the upstream limit, %d rate-limited, %d loops refused)",
		srv.Serial(), st.Served, st.Busy, st.Limited, st.Loops)
}

func (d *dnsd) loop(ctx context.Context, srv *dns.Server, n service.Notifier, watch time.Duration, done <-chan error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(watch)
	defer tick.Stop()
	wd := n.Watchdog(ctx)
	for {
		select {
		case <-ctx.Done():
			n.Send("STOPPING=1")
			return <-done
		case err := <-done:
			// The server stops on the same cancel as ctx: when both are
			// ready the select may pick this case, and it is still a stop.
			if ctx.Err() != nil {
				n.Send("STOPPING=1")
				return err
			}
			return fmt.Errorf("serve: %w", err)
		case <-wd:
			n.Send("WATCHDOG=1")
		case <-hup:
			d.reload(srv, n)
		case <-tick.C:
			if d.fileStamp() != d.stamp {
				d.reload(srv, n)
			}
		}
	}
}

// reload swaps in the new zone; a broken file keeps the old zone serving.
func (d *dnsd) reload(srv *dns.Server, n service.Notifier) {
	cfg, zone, err := d.load()
	if err != nil {
		d.log.Error("reload: keeping the old zone", "err", err)
		n.Status("reload failed, old zone serving: " + err.Error())
		return
	}
	srv.SetPolicy(dns.PolicyOf(cfg))
	srv.SetZone(zone)
	n.Status(d.status(srv))
}
