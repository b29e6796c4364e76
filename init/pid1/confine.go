package pid1

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"tandem/init/supervise"
	"tandem/internal/atomicfile"
	"tandem/internal/nodeconfig"
)

// The node daemons' users and groups. The initramfs has no user
// database, so they are fixed numbers (docs/services.md), clear of the
// mail container's accounts (internal/mailroot), which share the node's
// user IDs.
const (
	// configGID may read the node configuration file.
	configGID = 60000
	dnsUID    = 60053 // tandem-dns, and its own group
	timeUID   = 60123 // tandem-time, and its own group
)

// privileges say how PID 1 runs one node daemon.
type privileges struct {
	// confine, if set, runs the daemon unprivileged (supervise.Confinement).
	confine *supervise.Confinement
	// runDir, if set, is a directory made for the daemon before it
	// starts, owned by its user: where it writes its state.
	runDir string
	// root says why a daemon without confine needs to be root.
	root string
}

// daemons are the node daemons PID 1 knows, by command name. A service
// whose command is not here runs as root, and the log says so.
var daemons = map[string]privileges{
	"tandem-dns": {confine: &supervise.Confinement{
		UID: dnsUID, GID: dnsUID, Groups: []uint32{configGID},
		Caps: []uintptr{unix.CAP_NET_BIND_SERVICE}, // port 53
	}},
	"tandem-time": {confine: &supervise.Confinement{
		UID: timeUID, GID: timeUID, Groups: []uint32{configGID},
		Caps: []uintptr{unix.CAP_SYS_TIME}, // steps and slews the clock
	}, runDir: "/run/tandem/time"},
	"tandem-network": {root: "links, addresses and routes over rtnetlink, the DHCP client's raw socket, the host name, /etc"},
	"tandem-cluster": {root: "the VIP and its ARP, DRBD over netlink and drbdadm, mounts, the mail container's namespaces, the watchdog, fencing, etcd's data on perm"},
}

// confine confines the service in spec if it is a node daemon PID 1 runs
// unprivileged (daemons): it makes the daemon's run directory and points
// its $TANDEM_NODE_CONFIG at the shared copy of the node config. args are
// the service's arguments before expansion.
func (in *Init) confine(spec *supervise.Spec, args []string) error {
	p, why := privilegesOf(spec.Path)
	in.log.Logf("service %s: %s", spec.Name, why)
	if p.confine != nil {
		if err := p.prepare(); err != nil {
			return fmt.Errorf("service %s: %w", spec.Name, err)
		}
		spec.Confine = p.confine
		spec.Env = append(slices.DeleteFunc(slices.Clone(spec.Env), func(kv string) bool {
			return strings.HasPrefix(kv, nodeConfigEnv+"=")
		}), nodeConfigEnv+"="+sharedConfig)
	}
	spec.Args = expand(args, spec.Env)
	return nil
}

// expand replaces $VAR in args with env's values.
func expand(args, env []string) []string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = os.Expand(a, func(k string) string { return vars[k] })
	}
	return out
}

// privilegesOf returns how to run the command at path, and a line for the
// log.
func privilegesOf(path string) (privileges, string) {
	name := filepath.Base(path)
	p, ok := daemons[name]
	switch {
	case !ok:
		return p, fmt.Sprintf("%s runs as root: not a node daemon PID 1 knows", name)
	case p.confine != nil:
		return p, fmt.Sprintf("%s runs confined: %s", name, p.confine)
	default:
		return p, fmt.Sprintf("%s runs as root: %s", name, p.root)
	}
}

// prepare makes the daemon's run directory, owned by its user.
func (p privileges) prepare() error {
	if p.runDir == "" || p.confine == nil {
		return nil
	}
	if err := os.MkdirAll(p.runDir, 0o755); err != nil {
		return err
	}
	return os.Chown(p.runDir, int(p.confine.UID), int(p.confine.GID))
}

// nodeConfigEnv names the node config file in the services' environment.
const nodeConfigEnv = "TANDEM_NODE_CONFIG"

// sharedConfig is the node config as the confined daemons read it: a copy
// without its secrets (nodeconfig.Redact: the console password's hash,
// the pairing codes), on /run in a directory of root and configGID. The
// node config itself, and everything else on perm, stays root's alone.
const sharedConfig = "/run/tandem/config/node.yaml"

// configPoll is how often PID 1 looks for a changed node config to copy
// again; tandem-dns looks at the copy as often.
const configPoll = 2 * time.Second

// shareConfig writes the copy of the node config at src to dst, readable
// by group gid: dst's directory is 2750 (set-group-ID, so the copy,
// written atomically beside it, is born with that group) and dst 0640.
// A config that does not load is not copied: the last good copy stays.
func shareConfig(src, dst string, gid int) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	out, err := nodeconfig.Redact(data, src)
	if err != nil {
		return err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil { // then made 2750 below
		return err
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o750|os.ModeSetgid); err != nil {
		return err
	}
	return atomicfile.Write(dst, out, 0o640)
}

// followConfig copies the node config at src to dst again whenever it
// changes (an administrator replaced it), until ctx ends.
func (in *Init) followConfig(ctx context.Context, src, dst string, gid int) {
	last := atomicfile.Stamp(src)
	t := time.NewTicker(configPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := atomicfile.Stamp(src)
		if s == last {
			continue
		}
		last = s
		if err := shareConfig(src, dst, gid); err != nil {
			in.log.Logf("node config changed, not copied for the confined services (they keep the last good one): %v", err)
			continue
		}
		in.log.Logf("node config changed: copied for the confined services")
	}
}
