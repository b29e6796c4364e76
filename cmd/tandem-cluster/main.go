// Command tandem-cluster is a node's cluster daemon: embedded etcd,
// the group's lease, resources and the mTLS API (package services/cluster).
//
// Usage:
//
//	tandem-cluster [-config FILE] [-state DIR] [-v]
//
// The node must first be paired with "tandemctl cluster create" or
// "tandemctl cluster join". It tells its supervisor READY=1 (sd_notify)
// once its API serves; SIGTERM stops the group here and releases it.
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

	"tandem/internal/service"
	"tandem/services/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-cluster:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/perm/tandem/cluster.yaml", "cluster configuration file (YAML)")
	stateDir := fs.String("state", "/perm/tandem/cluster", "state directory: certificates, etcd data, status.json")
	verbose := fs.Bool("v", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem-cluster [-config FILE] [-state DIR] [-v]\n\nRuns this node's cluster daemon (pair it first with tandemctl cluster create|join).\n\n")
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
	f, err := os.Open(*cfgPath)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := cluster.LoadConfig(f, *cfgPath)
	f.Close()
	if err != nil {
		return err
	}
	d, err := cluster.New(ctx, cluster.Options{Config: cfg, State: cluster.State{Dir: *stateDir}, Log: log})
	if err != nil {
		return err
	}
	return d.Run(ctx, func() { service.Notifier{Log: log}.Send("READY=1") })
}
