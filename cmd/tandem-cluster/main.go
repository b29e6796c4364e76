// Command tandem-cluster is a node's cluster daemon: embedded etcd,
// the group's lease, resources and the mTLS API (package services/cluster).
//
// Usage:
//
//	tandem-cluster [-config FILE] [-node-config FILE] [-state DIR] [-v]
//	tandem-cluster fence-peer|after-resync-target
//
// The config is -config if that file exists, else it is derived from the
// node config (docs/cluster.md). A node not yet paired pairs itself when
// the node config says how (cluster.pairing), else it needs "tandemctl
// cluster create" or "join". It tells its supervisor READY=1 (sd_notify)
// once its API serves; SIGTERM stops the group here and releases it.
//
// DRBD runs the second form as its handler; it asks the daemon on this
// node and exits with the code DRBD expects.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"tandem/internal/container"
	"tandem/internal/nodeconfig"
	"tandem/internal/service"
	"tandem/services/cluster"
	"tandem/services/replication"
)

func main() {
	// The mail workload's container init is this binary, re-executed by
	// internal/container's host side.
	if container.IsInit() {
		os.Exit(container.RunInit())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(os.Args) == 2 && (os.Args[1] == "fence-peer" || os.Args[1] == "after-resync-target") {
		os.Exit(handler(ctx, os.Args[1]))
	}
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-cluster:", err)
		switch {
		case errors.Is(err, flag.ErrHelp):
			os.Exit(2)
		case errors.Is(err, cluster.ErrNoCluster), errors.Is(err, cluster.ErrNotPaired):
			// Nothing to run until an administrator pairs the node:
			// tell the supervisor not to restart us.
			os.Exit(service.NoRestart)
		}
		os.Exit(1)
	}
}

// handler forwards a DRBD handler call to the local daemon.
func handler(ctx context.Context, name string) int {
	dir, endpoint := cluster.ClientDefaults()
	c, err := cluster.NewClient(cluster.State{Dir: dir}, endpoint)
	if err == nil {
		var code int
		if code, err = c.RunHandler(ctx, name, os.Getenv("DRBD_RESOURCE")); err == nil {
			return code
		}
	}
	fmt.Fprintf(os.Stderr, "tandem-cluster %s: %v\n", name, err)
	return replication.ExitFailed
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/perm/tandem/cluster.yaml", "cluster configuration file (YAML); if missing, derived from -node-config")
	nodeCfg := fs.String("node-config", "", "node configuration file, for a derived config and unattended pairing")
	stateDir := fs.String("state", "/perm/tandem/cluster", "state directory: certificates, etcd data, status.json")
	verbose := fs.Bool("v", false, "log debug messages")
	dnsView := fs.String("dns-view", "", "file to keep the cluster view in for tandem-dns -cluster (the members and the VIP, JSON)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem-cluster [-config FILE] [-node-config FILE] [-state DIR] [-v]\n\nRuns this node's cluster daemon.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), flag.ErrHelp)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := service.SetNice(0, cluster.DaemonNice); err != nil {
		log.Warn("cannot raise the daemon's priority", "err", err)
	}
	cfg, nc, err := loadConfig(*cfgPath, *nodeCfg)
	if err != nil {
		return err
	}
	st := cluster.State{Dir: *stateDir}
	if !st.Paired() && nc != nil && nc.Cluster.Pairing != nil {
		if err := pair(ctx, cfg, nc, st, log); err != nil {
			return err
		}
	}
	d, err := cluster.New(ctx, cluster.Options{Config: cfg, State: st, Log: log, DNSView: *dnsView})
	if err != nil {
		return err
	}
	return d.Run(ctx, func() { service.Notifier{Log: log}.Send("READY=1") })
}

// loadConfig reads the cluster config file, or derives the config from
// the node config when there is no such file.
func loadConfig(path, nodePath string) (*cluster.Config, *nodeconfig.Config, error) {
	var nc *nodeconfig.Config
	if nodePath != "" {
		var err error
		if nc, err = nodeconfig.LoadFile(nodePath); err != nil {
			return nil, nil, err
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && nc != nil {
		cfg, err := cluster.FromNodeConfig(nc, os.Getenv("TANDEM_DATA_DEVICE"))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", nodePath, err)
		}
		return cfg, nc, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := cluster.LoadConfig(f, path)
	return cfg, nc, err
}

// pair pairs the node as the node config says: the founder creates the
// cluster with the preset codes, every other node joins the founder,
// retrying until the founder answers (it may boot later).
func pair(ctx context.Context, cfg *cluster.Config, nc *nodeconfig.Config, st cluster.State, log *slog.Logger) error {
	p := nc.Cluster.Pairing
	if p.Founder == cfg.Node {
		if _, err := cluster.Create(cfg, st, p.Codes); err != nil {
			return err
		}
		log.Info("pairing: created the cluster", "cluster", cfg.Cluster, "codes", len(p.Codes))
		return nil
	}
	var founder string
	for _, n := range nc.Cluster.Nodes {
		if n.Name == p.Founder {
			founder = cluster.Member{Address: n.Address, APIPort: cluster.DefaultAPIPort}.APIURL()
		}
	}
	if p.Code == "" {
		return fmt.Errorf("cluster.pairing.code: a node other than the founder needs its code")
	}
	var lastLog time.Time
	for {
		err := cluster.Join(ctx, cfg, st, founder, p.Code)
		if err == nil {
			log.Info("pairing: joined", "cluster", cfg.Cluster, "via", founder)
			return nil
		}
		if time.Since(lastLog) > 30*time.Second {
			log.Info("pairing: waiting for the founder", "founder", p.Founder, "at", founder, "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pairing with %s: %w", founder, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
