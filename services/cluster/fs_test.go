package cluster

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
)

// TestFormatClaim: the first node to claim a volume's format gets it; the
// same claim again (a retry after a lost answer) is still its own; another
// node, or the same node under a later lease, is refused with the name of
// the node that formatted.
func TestFormatClaim(t *testing.T) {
	cli := testEtcd(t)

	agent := func(node string, token int64) *fsAgent {
		d := &Daemon{cfg: &Config{Node: node}, cli: cli, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		d.lease.token = token
		return &fsAgent{d: d, device: "/dev/drbd0", dir: "/srv/mail"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := prefixFS + "/srv/mail"
	if err := agent("data-a", 14).claim(ctx, k); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := agent("data-a", 14).claim(ctx, k); err != nil {
		t.Errorf("the same claim again (its answer lost): %v", err)
	}
	for _, c := range []struct {
		node  string
		token int64
	}{{"data-b", 59}, {"data-a", 301}} {
		err := agent(c.node, c.token).claim(ctx, k)
		if err == nil || !strings.Contains(err.Error(), "but data-a made one for /srv/mail before") {
			t.Errorf("claim by %s under token %d: %v, want a refusal naming data-a", c.node, c.token, err)
		}
	}
}

// TestRestoreCode: a used code is written back unused; a code that
// changed since (restored already, its answer lost) is left as it is.
func TestRestoreCode(t *testing.T) {
	cli := testEtcd(t)
	d := &Daemon{cfg: &Config{}, cli: cli, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	ck := prefixPairing + "J6V8"
	p, err := cli.Put(ctx, ck, "used")
	if err != nil {
		t.Fatal(err)
	}
	d.restoreCode(ctx, ck, p.Header.Revision, []byte("first"))
	d.restoreCode(ctx, ck, p.Header.Revision, []byte("second"))
	r, err := cli.Get(ctx, ck)
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "first" {
		t.Fatalf("code after two restores: %v, %v; want the first value, once", r, err)
	}
}

// TestFindMount: the topmost mount on the directory is found, and read-only
// whether the mount or only its filesystem is (ext4 after an error with
// errors=remount-ro keeps the mount's options rw).
func TestFindMount(t *testing.T) {
	const info = `22 1 0:21 / /proc rw,nosuid - proc proc rw
40 22 147:0 / /srv/mail rw,noatime shared:1 - ext4 /dev/drbd0 rw,errors=remount-ro
41 40 147:0 / /srv/mail rw,noatime - ext4 /dev/drbd0 ro,errors=remount-ro
50 22 8:3 / /srv/other ro,noatime - ext4 /dev/sda3 rw
53 22 8:6 / /srv/newer rw,noatime - ext4 /dev/sda6 rw,noinit_itable,errors=remount-ro,emergency_ro
54 22 8:7 / /srv/rofirst rw - ext4 /dev/sda7 rw,errors=remount-ro,ro
51 22 8:4 / /srv/fine rw,noatime - ext4 /dev/sda4 rw,errors=remount-ro
52 22 8:5 / /srv/rootish rw - ext4 /dev/sda5 rootdir=x
`
	for _, tt := range []struct {
		dir    string
		want   *mountEntry
		absent bool
	}{
		{"/srv/mail", &mountEntry{source: "/dev/drbd0", readOnly: true}, false},
		{"/srv/other", &mountEntry{source: "/dev/sda3", readOnly: true}, false},
		{"/srv/fine", &mountEntry{source: "/dev/sda4"}, false},
		{"/srv/newer", &mountEntry{source: "/dev/sda6", readOnly: true}, false},
		{"/srv/rofirst", &mountEntry{source: "/dev/sda7", readOnly: true}, false},
		{"/srv/rootish", &mountEntry{source: "/dev/sda5"}, false},
		{"/srv/none", nil, true},
	} {
		got, err := findMount(strings.NewReader(info), tt.dir)
		if err != nil || (got == nil) != tt.absent || (got != nil && *got != *tt.want) {
			t.Errorf("findMount(%s) = %+v, %v; want %+v", tt.dir, got, err, tt.want)
		}
	}
}

// TestMonitorSeesFilesystemError mounts a real ext4 volume as the agent
// does, makes the kernel report an error in it (trigger_fs_error), and
// checks that errors=remount-ro stopped writes and Monitor fails.
func TestMonitorSeesFilesystemError(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "losetup", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	a := &fsAgent{d: &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil))}, device: dev, dir: filepath.Join(t.TempDir(), "mail")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if err := a.Monitor(ctx); err != nil {
		t.Fatalf("Monitor of a healthy volume: %v", err)
	}
	trigger := filepath.Join("/sys/fs/ext4", filepath.Base(dev), "trigger_fs_error")
	if err := os.WriteFile(trigger, []byte("tandem test\n"), 0o200); err != nil {
		t.Fatalf("trigger an ext4 error: %v", err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "after"), []byte("x"), 0o600); err == nil {
		t.Errorf("a write after the filesystem error succeeded: errors=remount-ro is not in effect")
	}
	if err := a.Monitor(ctx); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Monitor after a filesystem error = %v, want read-only", err)
	}
}
