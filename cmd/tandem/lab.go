package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"tandem/lab"
)

const labUsage = `usage: tandem lab COMMAND [-dir DIR] [ARGS]

Boots two data nodes and an arbitrator from built images under QEMU (TCG) on
a private switched network (docs/lab.md). Needs root.

commands:
  up [-images DIR] [-seed DIR]
                       boot the lab, wait for every node to be ready, print the
                       addresses, and run until Ctrl-C or "tandem lab down".
                       The nodes get node configs that pair them into a
                       cluster serving mail on 10.77.0.100 (docs/lab.md);
                       -seed instead: files under DIR/NODE/ go into NODE's seed
                       directory (DIR/data-a/node.yaml -> /perm/tandem/node.yaml)
  status               each VM up or down, and the partition
  kill NODE            SIGKILL a node's QEMU (a power cut)
  start NODE           boot a node that is down again, from its disk as it is
  reboot NODE          kill and start a node (a power cycle)
  shutdown NODE        press a node's ACPI power button and wait until it is off
  partition NODE...    cut the named nodes (and "host", if named) off from the rest
  heal                 remove the partition
  down                 stop the VMs and remove the lab's network namespace
`

func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, labUsage)
		if len(args) == 0 {
			return errors.New("lab: no command")
		}
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, labUsage); fs.PrintDefaults() }
	dir := fs.String("dir", "out/lab", "the lab's directory: disks NODE.raw, serial logs NODE.log, lab.json, control socket")
	images := fs.String("images", "out", "directory holding the builds kvm-node/ and kvm-arbitrator/ (up)")
	seed := fs.String("seed", "", "directory with a subdirectory of seed files per node (up)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	switch args[0] {
	case "up":
		return labUp(ctx, *dir, *images, *seed, stdout, stderr)
	case "status":
		return labStatus(*dir, stdout)
	case "kill":
		if len(rest) != 1 {
			return errors.New("lab kill: want one NODE")
		}
		return lab.KillNode(*dir, rest[0])
	case "start", "reboot", "shutdown":
		if len(rest) != 1 {
			return fmt.Errorf("lab %s: want one NODE", args[0])
		}
		op := args[0]
		if op == "start" {
			op = "boot"
		}
		return labControl(*dir, op, rest, stdout)
	case "partition":
		if len(rest) == 0 {
			return errors.New("lab partition: want at least one NODE")
		}
		return labControl(*dir, "partition", rest, stdout)
	case "heal":
		return labControl(*dir, "heal", nil, stdout)
	case "down":
		return lab.Down(*dir)
	}
	fmt.Fprint(stderr, labUsage)
	return fmt.Errorf("lab: unknown command %q", args[0])
}

// labUp runs the lab in the foreground until ctx ends (Ctrl-C) or
// `tandem lab down` stops it.
func labUp(ctx context.Context, dir, images, seed string, stdout, stderr io.Writer) error {
	logf := func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }
	nodes := slices.Clone(lab.Nodes)
	var cs *lab.ClusterSeed
	if seed != "" {
		for i := range nodes {
			var err error
			if nodes[i].Seed, err = readSeed(filepath.Join(seed, nodes[i].Name)); err != nil {
				return err
			}
		}
	} else {
		var err error
		if cs, err = lab.NewClusterSeed(nodes); err != nil {
			return err
		}
		nodes = cs.Apply(nodes)
	}
	var bmcs map[string]string
	if cs != nil {
		bmcs = cs.BMCPasswords
	}
	l, err := lab.Start(ctx, lab.Options{Dir: dir, Images: images, Nodes: nodes, Logf: logf, BMCPasswords: bmcs})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Stop(); err != nil {
			logf("lab: stop: %v", err)
		}
	}()
	ready := make(chan error, 1)
	go func() { ready <- l.WaitReady(ctx) }()
	select {
	case err := <-ready:
		if err != nil {
			return err
		}
	case <-l.Done():
		return errors.New("lab: stopped before every node was ready")
	}
	printState(stdout, l.Status())
	fmt.Fprintf(stdout, "\nreach the nodes with: ip netns exec %s ping %s\n", l.Netns(), lab.Nodes[0].Addr)
	if cs != nil {
		printCluster(stdout, cs, l.Netns(), dir)
	}
	fmt.Fprintf(stdout, "Ctrl-C or \"tandem lab down -dir %s\" stops the lab\n", dir)
	select {
	case <-ctx.Done():
	case <-l.Done():
	}
	return l.Stop()
}

// printCluster tells how to administer the lab's cluster and use its mail
// service from the lab's namespace.
func printCluster(w io.Writer, cs *lab.ClusterSeed, netns, dir string) {
	founder, arbiter := lab.Nodes[0].Addr, lab.Nodes[2].Addr
	fmt.Fprintf(w, `
The nodes pair into cluster %q by themselves (a minute or two under TCG).
Administrator certificate (once; the code works once), then status:
  ip netns exec %[2]s go run ./cmd/tandemctl -state %[3]s/admin cluster admin \
      -cluster %[1]s -name %[4]s -peer https://%[5]s:7443 -code %[6]s
  ip netns exec %[2]s go run ./cmd/tandemctl -state %[3]s/admin -endpoint https://%[7]s:7443 status
Mail on the VIP %[8]s: SMTP 25, submission 587 (STARTTLS) and 465 (TLS) with AUTH,
IMAP 143 (STARTTLS) and 993 (TLS): user %[9]s, password %[10]s; the mail CA the
clients trust:
  ip netns exec %[2]s go run ./cmd/tandemctl -state %[3]s/admin -endpoint https://%[7]s:7443 mail cert show -ca
Console password (rescue shell, GRUB's editor) of every node: %[11]s
`, lab.ClusterName, netns, dir, lab.AdminName, founder, cs.AdminCode, arbiter, lab.VIP, cs.MailUser, cs.MailPassword, cs.ConsolePassword)
}

// readSeed returns the files under dir by relative name; no dir, none.
func readSeed(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab up: seed: %w", err)
	}
	return files, nil
}

func labStatus(dir string, stdout io.Writer) error {
	s, err := lab.Control(dir, "status")
	if errors.Is(err, lab.ErrNotRunning) {
		if s, err = lab.ReadState(dir); err == nil {
			fmt.Fprintf(stdout, "lab process %d is not running; last state:\n", s.PID)
		}
	}
	if err != nil {
		return err
	}
	printState(stdout, *s)
	return nil
}

func labControl(dir, op string, nodes []string, stdout io.Writer) error {
	s, err := lab.Control(dir, op, nodes...)
	if err != nil {
		return err
	}
	printState(stdout, *s)
	return nil
}

func printState(w io.Writer, s lab.State) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tBOOTS\tQEMU PID\tSERIAL LOG")
	for _, n := range s.Nodes {
		st := "down"
		if n.Up {
			st = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", n.Name, n.Addr, st, n.Boots, n.PID, n.Log)
	}
	fmt.Fprintf(tw, "host\t%s\t(netns %s)\t\t\t\n", s.Host, s.Netns)
	tw.Flush()
	part := "none"
	if len(s.Partitioned) > 0 {
		part = strings.Join(s.Partitioned, " ") + " cut off from the rest"
	}
	if len(s.BlockedTCP) > 0 {
		part += fmt.Sprintf("; TCP ports %v dropped (replication link cut)", s.BlockedTCP)
	}
	fmt.Fprintf(w, "VIP %s (reserved); SNTP server %s:%d; partition: %s\n", s.VIP, s.Host, lab.NTPPort, part)
	var ports []string
	for _, p := range s.Ports {
		ports = append(ports, fmt.Sprintf("%s %d/%d/%d", p.Name, p.Received, p.Sent, p.Drops))
	}
	fmt.Fprintf(w, "frames received/sent/dropped by partition: %s\n", strings.Join(ports, ", "))
	var ntp []string
	for _, ip := range slices.Sorted(maps.Keys(s.NTPRequests)) {
		ntp = append(ntp, fmt.Sprintf("%s %d", ip, s.NTPRequests[ip]))
	}
	if len(ntp) > 0 {
		fmt.Fprintf(w, "SNTP requests by client: %s\n", strings.Join(ntp, ", "))
	}
}
