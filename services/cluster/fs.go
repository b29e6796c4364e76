package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"tandem/services/replication"
)

// prefixFS holds, per mount directory, the node that made the filesystem:
// a device that shows no filesystem although the cluster made one is
// never formatted again.
const prefixFS = "/tandem/fs/formatted"

// fsAgent mounts the replicated volume's ext4 filesystem: a few system
// calls where the Filesystem OCF agent runs a shell script of hundreds of
// lines. It makes the filesystem once, on the cluster's first start.
type fsAgent struct {
	d           *Daemon
	device, dir string
}

func newFS(d *Daemon, p map[string]string) (*fsAgent, error) {
	a := &fsAgent{d: d, device: p["device"], dir: p["directory"]}
	if !strings.HasPrefix(a.device, "/dev/") {
		return nil, fmt.Errorf("params.device %q: want a /dev path", a.device)
	}
	if !filepath.IsAbs(a.dir) || filepath.Clean(a.dir) != a.dir || a.dir == "/" {
		return nil, fmt.Errorf("params.directory %q: want a clean absolute path other than /", a.dir)
	}
	return a, nil
}

// claim records in etcd, under k, that this node makes the filesystem,
// unless a node made one before. The record names the node and its
// fencing token, so a retry after an answer that was lost recognises its
// own record. etcd's errors are retried for the start's whole timeout:
// while leadership moves etcd drops proposals ("raft proposal dropped"),
// and the founder's first start, failing on one, was barred from the
// group for failure_timeout by the fatal start failure.
func (a *fsAgent) claim(ctx context.Context, k string) error {
	d := a.d
	d.mu.Lock()
	mine := fmt.Sprintf("%s/%d", d.cfg.Node, d.lease.token)
	d.mu.Unlock()
	var tr *clientv3.TxnResponse
	err := d.retryEtcd(ctx, 0, "fs: record the format", func(c context.Context) (err error) {
		tr, err = d.cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, mine)).Else(clientv3.OpGet(k)).Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("format %s: %w", a.device, err)
	}
	if tr.Succeeded {
		return nil
	}
	var by string
	if kvs := tr.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		by = string(kvs[0].Value)
	}
	if by == mine {
		return nil
	}
	node, _, _ := strings.Cut(by, "/")
	return fmt.Errorf("%s shows no filesystem, but %s made one for %s before: not formatting over data", a.device, node, a.dir)
}

// hasExt4 reports whether dev starts with an ext2/3/4 superblock (magic
// 0xEF53 at byte 56 of the superblock at byte 1024).
func hasExt4(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, 1024+56); err != nil {
		return false, fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	return binary.LittleEndian.Uint16(b) == 0xEF53, nil
}

func (a *fsAgent) Start(ctx context.Context) error {
	if m, err := a.mounted(); err != nil || m {
		return err
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return err
	}
	ok, err := hasExt4(a.device)
	if err != nil {
		return err
	}
	if !ok {
		if err := a.format(ctx); err != nil {
			return err
		}
	}
	// noinit_itable: the kernel does not zero the lazily initialised inode
	// tables in the background, which would replicate the whole volume.
	// errors=remount-ro: a filesystem error stops writes instead of
	// carrying on over damage (or panicking the node); Monitor sees the
	// read-only mount and the group fails over. mke2fs sets it too, for
	// filesystems made before this option was passed.
	if err := unix.Mount(a.device, a.dir, "ext4", unix.MS_NOATIME, "noinit_itable,errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s on %s: %w", a.device, a.dir, err)
	}
	return nil
}

// format makes the filesystem, once in the cluster's life.
func (a *fsAgent) format(ctx context.Context) error {
	k := prefixFS + a.dir
	if err := a.claim(ctx, k); err != nil {
		return err
	}
	a.d.log.Info("fs: making the filesystem", "device", a.device)
	// lazy_itable_init with noinit_itable (above) and lazy_journal_init
	// write only what ext4 needs now, a few MiB, instead of zeroing
	// inode tables and the journal through the replication link (which
	// starved the node's lease renewals in the emulated lab). A journal
	// replay reads only blocks whose sequence numbers and checksums
	// (metadata_csum) match, never stale contents. nodiscard: mke2fs
	// discards the whole device by default, a write to every extent of
	// the volume; DRBD puts each in its activity log, and after a crash
	// of this primary the peer resyncs every extent there, the whole
	// volume, starving both nodes for minutes.
	// replication.Exec runs it with the fixed system PATH, as it does
	// drbdadm: a service's environment may not name /sbin.
	if _, err := (replication.Exec{}).Run(ctx, "mke2fs", "-t", "ext4", "-q", "-F", "-L", "tandem-data", "-e", "remount-ro",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", a.device); err != nil {
		if _, derr := a.d.cli.Delete(context.WithoutCancel(ctx), k); derr != nil {
			a.d.log.Error("fs: remove the format claim after a failed mke2fs", "key", k, "err", derr)
		}
		return fmt.Errorf("make the filesystem on %s: %w", a.device, err)
	}
	return nil
}

func (a *fsAgent) Stop(ctx context.Context) error {
	for {
		err := unix.Unmount(a.dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			if m, merr := a.mounted(); merr != nil || !m {
				return merr
			}
			continue // stacked mounts
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unmount %s: %w", a.dir, err)
		}
		for _, pid := range users(a.dir) {
			a.d.log.Warn("fs: killing a process that holds the volume", "pid", pid, "dir", a.dir)
			unix.Kill(pid, unix.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmount %s: still busy: %w", a.dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *fsAgent) Monitor(ctx context.Context) error {
	m, err := a.mountInfo()
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("%w: %s is not mounted", ErrNotRunning, a.dir)
	}
	if m.source != a.device {
		return fmt.Errorf("%s holds %s, want %s", a.dir, m.source, a.device)
	}
	if m.readOnly {
		return fmt.Errorf("%s is read-only (a filesystem error?)", a.dir)
	}
	return nil
}

func (a *fsAgent) mounted() (bool, error) {
	m, err := a.mountInfo()
	return m != nil, err
}

type mountEntry struct {
	source   string
	readOnly bool
}

// mountInfo finds the topmost mount on the agent's directory.
func (a *fsAgent) mountInfo() (*mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return findMount(f, a.dir)
}

// findMount reads mountinfo for the topmost mount on dir. It is
// read-only if the mount is, or its filesystem: ext4's errors=remount-ro
// leaves the mount's own options rw and marks the superblock "ro" (older
// kernels) or "emergency_ro" beside "rw" (6.x).
func findMount(r io.Reader, dir string) (*mountEntry, error) {
	var found *mountEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[4] != dir {
			continue
		}
		ro := func(opts string) bool {
			for _, o := range strings.Split(opts, ",") {
				if o == "ro" || o == "emergency_ro" {
					return true
				}
			}
			return false
		}
		for i, field := range fields {
			if field == "-" && i+3 < len(fields) {
				found = &mountEntry{source: fields[i+2], readOnly: ro(fields[5]) || ro(fields[i+3])}
			}
		}
	}
	return found, sc.Err()
}

// users lists the processes with a file, directory or mapping under dir.
func users(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		links := []string{base + "/cwd", base + "/root", base + "/exe"}
		fds, _ := filepath.Glob(base + "/fd/*")
		links = append(links, fds...)
		hit := false
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && under(t) {
				hit = true
				break
			}
		}
		if !hit {
			if maps, err := os.ReadFile(base + "/maps"); err == nil && strings.Contains(string(maps), " "+dir+"/") {
				hit = true
			}
		}
		if hit {
			pids = append(pids, pid)
		}
	}
	return pids
}
