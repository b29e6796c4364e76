package pid1

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"tandem/init/supervise"
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

// confine confines the services that are node daemons PID 1 runs
// unprivileged (daemons), makes their run directories and lets them read
// the node configuration file.
func (in *Init) confine(specs []supervise.Spec) error {
	confined := false
	for i := range specs {
		p, why := privilegesOf(specs[i].Path)
		in.log.Logf("service %s: %s", specs[i].Name, why)
		if err := p.prepare(); err != nil {
			return fmt.Errorf("service %s: %w", specs[i].Name, err)
		}
		specs[i].Confine = p.confine
		confined = confined || p.confine != nil
	}
	if !confined {
		return nil
	}
	if err := shareConfig(in.nodeConfig(), configGID); err != nil {
		in.log.Logf("node config: the confined services may not read it: %v", err)
	}
	return nil
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

// shareConfig lets group gid read the node configuration file at path:
// the file gets group gid and g+r, and each directory above it that
// others cannot search gets group gid and g+x, up to the first one they
// can. On a node that is /perm/tandem (0700): it becomes 0710, so the
// group reaches node.yaml by its name and nothing else there (the rest
// is 0600, and the directory cannot be listed). A file replaced later
// must keep group and mode for a confined daemon to read it again.
func shareConfig(path string, gid int) error {
	if err := addGroup(path, gid, 0o040); err != nil {
		return err
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 != 0 || dir == "/" {
			return nil
		}
		if err := addGroup(dir, gid, 0o010); err != nil {
			return err
		}
	}
}

// addGroup gives path group gid with the group permission bits in bits
// added, unless its group already has them.
func addGroup(path string, gid int, bits os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Gid) == gid && fi.Mode().Perm()&bits == bits {
		return nil
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return err
	}
	return os.Chmod(path, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)|bits)
}
