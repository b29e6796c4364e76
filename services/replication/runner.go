package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"tandem/internal/atomicfile"
)

// Commander runs one program with arguments and returns its combined
// output. Exec is the real one; tests use a fake.
type Commander interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Exec runs programs with os/exec, stdin empty (so nothing can prompt),
// and a PATH that finds drbd-utils' helpers.
type Exec struct {
	// Path is the PATH for the commands; empty means
	// /sbin:/usr/sbin:/bin:/usr/bin:/lib/drbd:/usr/lib/drbd.
	Path string
}

// Run runs name with args; a non-zero exit is an error carrying the
// output.
func (e Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := e.Path
	if path == "" {
		path = "/sbin:/usr/sbin:/bin:/usr/bin:/lib/drbd:/usr/lib/drbd"
	}
	prog, err := lookPath(name, path)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = []string{"PATH=" + path, "LANG=C"}
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// lookPath finds name in the directories of path (exec.LookPath would
// search this process's PATH, which PID 1 may not have).
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in %s", name, exec.ErrNotFound, path)
}

// Resource drives one DRBD resource on this node through drbdadm and
// drbdsetup.
type Resource struct {
	// Config is the resource; ConfigPath is where WriteConfig puts it and
	// every drbdadm call reads it (drbdadm -c).
	Config     Config
	ConfigPath string
	// Self is this node's host name (one of Config.Nodes).
	Self string
	// Cmd runs drbdadm, drbdsetup and modprobe.
	Cmd Commander
	// ModuleLoaded reports whether the drbd module is loaded; nil means
	// "/proc/drbd exists".
	ModuleLoaded func() bool
	// Metadata reads the backing device's metadata kind; nil means
	// DiskMetadata.
	Metadata func(disk string) (Metadata, error)
	// Logf logs each step; nil means quiet.
	Logf func(format string, args ...any)
	// Root is prefixed to the directories drbd-utils needs (tests); ""
	// means /.
	Root string
}

// runtimeDirs are where drbd-utils keeps locks and state; a node's root
// is an initramfs, so nothing else makes them.
var runtimeDirs = []string{"var/lib/drbd", "run/drbd", "var/lock"}

func (r *Resource) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf("replication: "+format, args...)
	}
}

func (r *Resource) drbdadm(ctx context.Context, args ...string) ([]byte, error) {
	return r.Cmd.Run(ctx, "drbdadm", append([]string{"-c", r.ConfigPath}, args...)...)
}

// WriteConfig writes the resource file to ConfigPath atomically.
func (r *Resource) WriteConfig() error {
	if _, ok := r.Config.Local(r.Self); !ok {
		return fmt.Errorf("%w: host %q is not a node of resource %s", ErrConfig, r.Self, r.Config.Resource)
	}
	if err := os.MkdirAll(filepath.Dir(r.ConfigPath), 0o755); err != nil {
		return fmt.Errorf("config %s: %w", r.Config.Resource, err)
	}
	// 0600: it holds the peers' shared secret.
	if err := atomicfile.WriteFrom(r.ConfigPath, 0o600, r.Config.WriteResource); err != nil {
		return fmt.Errorf("config %s: %w", r.Config.Resource, err)
	}
	return nil
}

// EnsureModule loads the drbd module unless it is loaded. It must run
// before the first drbdadm call: drbd-utils 9 picks its 8.4 helpers only
// when it finds the 8.4 module, and otherwise writes v09 metadata.
func (r *Resource) EnsureModule(ctx context.Context) error {
	loaded := r.ModuleLoaded
	if loaded == nil {
		loaded = func() bool { _, err := os.Stat("/proc/drbd"); return err == nil }
	}
	if loaded() {
		return nil
	}
	r.logf("modprobe drbd")
	if _, err := r.Cmd.Run(ctx, "modprobe", "drbd"); err != nil {
		return fmt.Errorf("load drbd module: %w", err)
	}
	if !loaded() {
		return fmt.Errorf("load drbd module: modprobe succeeded but the module is not loaded")
	}
	return nil
}

// EnsureMetadata creates the resource's metadata when the backing disk
// has none, and reports whether it did (the node that created it is the
// one to start the initial sync from, with Primary(ctx, true)). Existing
// 8.4 metadata is never touched; v09 metadata is ErrMetadata09.
func (r *Resource) EnsureMetadata(ctx context.Context) (bool, error) {
	local, ok := r.Config.Local(r.Self)
	if !ok {
		return false, fmt.Errorf("%w: host %q is not a node of resource %s", ErrConfig, r.Self, r.Config.Resource)
	}
	read := r.Metadata
	if read == nil {
		read = DiskMetadata
	}
	m, err := read(local.Disk)
	if err != nil {
		return false, fmt.Errorf("create-md %s: %w", r.Config.Resource, err)
	}
	switch m {
	case Metadata84:
		return false, nil
	case Metadata09:
		return false, fmt.Errorf("create-md %s on %s: %w", r.Config.Resource, local.Disk, ErrMetadata09)
	}
	if err := r.EnsureModule(ctx); err != nil {
		return false, err
	}
	r.logf("create-md %s on %s", r.Config.Resource, local.Disk)
	// --force only answers drbdmeta's questions (stdin is empty); the
	// check above is what keeps existing metadata safe.
	if _, err := r.drbdadm(ctx, "--force", "create-md", r.Config.Resource); err != nil {
		return false, fmt.Errorf("create-md %s: %w", r.Config.Resource, err)
	}
	return true, nil
}

// Up attaches the backing disk and starts connecting to the peer.
func (r *Resource) Up(ctx context.Context) error {
	if err := r.EnsureModule(ctx); err != nil {
		return err
	}
	return r.run(ctx, "up", "up")
}

// Start writes the config, loads the module, creates the metadata if the
// disk has none and brings the resource up, in that order. It reports
// whether it created the metadata (see EnsureMetadata).
func (r *Resource) Start(ctx context.Context) (created bool, err error) {
	for _, d := range runtimeDirs {
		if err := os.MkdirAll(filepath.Join("/", r.Root, d), 0o755); err != nil {
			return false, fmt.Errorf("start %s: %w", r.Config.Resource, err)
		}
	}
	// drbd-utils 8.4 helpers use /var/run/drbd.
	if _, err := os.Lstat(filepath.Join("/", r.Root, "var/run")); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("../run", filepath.Join("/", r.Root, "var/run")); err != nil {
			return false, fmt.Errorf("drbd-utils /var/run: %w", err)
		}
	}
	if err := r.WriteConfig(); err != nil {
		return false, err
	}
	if err := r.EnsureModule(ctx); err != nil {
		return false, err
	}
	if created, err = r.EnsureMetadata(ctx); err != nil {
		return false, err
	}
	return created, r.Up(ctx)
}

// Primary promotes the resource. force is only for the initial sync on
// the node that created the metadata (both disks Inconsistent): it makes
// this side's data the good copy.
func (r *Resource) Primary(ctx context.Context, force bool) error {
	args := []string{"primary"}
	if force {
		args = append(args, "--force")
	}
	return r.run(ctx, "promote", args...)
}

// SeedNew skips the initial sync of a resource whose two disks are both
// new: with both nodes connected, Secondary and Inconsistent, it starts a
// new data generation with an empty bitmap, so both become UpToDate at
// once. Only for disks that nothing has used yet (the cluster's creation):
// blocks never written may differ between the two, which a filesystem
// made afterwards never reads.
func (r *Resource) SeedNew(ctx context.Context) error {
	return r.run(ctx, "seed", "--", "--clear-bitmap", "new-current-uuid")
}

// Disconnect drops the connection to the peer (StandAlone).
func (r *Resource) Disconnect(ctx context.Context) error {
	return r.run(ctx, "disconnect", "disconnect")
}

// Connect starts connecting to the peer again; discardMine makes this
// node the split-brain victim: its changes since the split are dropped
// and it resyncs from the peer.
func (r *Resource) Connect(ctx context.Context, discardMine bool) error {
	args := []string{"connect"}
	if discardMine {
		args = append(args, "--discard-my-data")
	}
	return r.run(ctx, "connect", args...)
}

// Secondary demotes the resource (its device must not be in use).
func (r *Resource) Secondary(ctx context.Context) error {
	return r.run(ctx, "demote", "secondary")
}

// ResumeIO resumes I/O that DRBD froze because the fence-peer handler
// failed (Status.Suspended is not "no"). Call it only once the peer is
// known unable to promote: the cluster has outdated it (OutdatePeer
// succeeded after quorum came back) or it was fenced; DRBD itself resumes
// when the peer reconnects.
func (r *Resource) ResumeIO(ctx context.Context) error {
	return r.run(ctx, "resume-io", "resume-io")
}

// Down disconnects and detaches the resource.
func (r *Resource) Down(ctx context.Context) error {
	return r.run(ctx, "down", "down")
}

// run logs and runs "drbdadm ARGS RESOURCE"; a failure is "WHAT RESOURCE: ...".
func (r *Resource) run(ctx context.Context, what string, args ...string) error {
	args = append(args, r.Config.Resource)
	r.logf("%s", strings.Join(args, " "))
	if _, err := r.drbdadm(ctx, args...); err != nil {
		return fmt.Errorf("%s %s: %w", what, r.Config.Resource, err)
	}
	return nil
}

// Status reads the resource's state from "drbdsetup events2 --now
// --statistics". A resource that is down gives Status{Up: false}
// (drbdsetup-84 then prints only "exists -" and exits 0).
func (r *Resource) Status(ctx context.Context) (Status, error) {
	out, err := r.Cmd.Run(ctx, "drbdsetup", "events2", "--now", "--statistics", r.Config.Resource)
	if err != nil {
		return Status{}, fmt.Errorf("status %s: %w", r.Config.Resource, err)
	}
	return ParseEvents2(bytes.NewReader(out), r.Config.Resource)
}
