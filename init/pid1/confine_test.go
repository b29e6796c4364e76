package pid1

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"tandem/image/recipe"
	"tandem/internal/testenv"
)

// TestDaemonsCovered: every command a recipe runs is a node daemon PID 1
// knows, either confined or root with its reason, so none runs as root
// because it was forgotten.
func TestDaemonsCovered(t *testing.T) {
	paths, err := filepath.Glob("../../recipes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range paths {
		if strings.HasSuffix(p, ".config.yaml") {
			continue // node configs, not recipes
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := recipe.Parse(p, f)
		f.Close()
		if err != nil {
			t.Fatalf("recipe.Parse(%s) = %v", p, err)
		}
		for _, s := range r.Services {
			n++
			d, ok := daemons[s.Command]
			if !ok {
				t.Errorf("%s: service %s: command %s is not in daemons (init/pid1/confine.go): say how it runs", p, s.Name, s.Command)
			}
			if (d.confine == nil) == (d.root == "") {
				t.Errorf("daemons[%q] has confine %v and root %q: want exactly one", s.Command, d.confine, d.root)
			}
		}
	}
	if n == 0 {
		t.Fatalf("no services in %v", paths)
	}
}

func TestPrivilegesOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/bin/tandem-dns", "tandem-dns runs confined: uid 60053, gid 60053, groups [60000], capabilities cap_net_bind_service"},
		{"/bin/tandem-time", "tandem-time runs confined: uid 60123, gid 60123, groups [60000], capabilities cap_sys_time"},
		{"/bin/tandem-network", "tandem-network runs as root: links, "},
		{"/usr/sbin/other", "other runs as root: not a node daemon PID 1 knows"},
	} {
		if _, got := privilegesOf(tc.path); !strings.HasPrefix(got, tc.want) {
			t.Errorf("privilegesOf(%s) = %q, want %q...", tc.path, got, tc.want)
		}
	}
}

// TestShareConfig lays out perm as a node has it and checks, as a
// confined daemon's user, that shareConfig opens node.yaml and nothing
// else: not the keys beside it, not the directory's listing.
func TestShareConfig(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "cat", "ls")
	perm := filepath.Join(testenv.PublicDir(t), "perm")
	dir := filepath.Join(perm, "tandem")
	cfg, key := filepath.Join(dir, "node.yaml"), filepath.Join(dir, "ca.key")
	testenv.MkdirAll(t, dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, cfg, []byte("hostname: a\n"), 0o600)
	testenv.WriteFile(t, key, []byte("secret\n"), 0o600)
	if asDaemon(t, "cat", cfg) == nil {
		t.Fatal("the daemon's user reads node.yaml before shareConfig: the test proves nothing")
	}
	for i := 0; i < 2; i++ { // a second run changes nothing
		if err := shareConfig(cfg, configGID); err != nil {
			t.Fatalf("shareConfig: %v", err)
		}
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		gid  uint32
	}{{cfg, 0o640, configGID}, {dir, 0o710, configGID}, {key, 0o600, 0}, {perm, 0o755, 0}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; fi.Mode().Perm() != tc.mode || gid != tc.gid {
			t.Errorf("after shareConfig, %s has mode %o, group %d; want %o, %d", tc.path, fi.Mode().Perm(), gid, tc.mode, tc.gid)
		}
	}
	if err := asDaemon(t, "cat", cfg); err != nil {
		t.Errorf("the daemon's user cannot read node.yaml after shareConfig: %v", err)
	}
	if asDaemon(t, "cat", key) == nil {
		t.Errorf("the daemon's user reads ca.key beside node.yaml")
	}
	if asDaemon(t, "ls", dir) == nil {
		t.Errorf("the daemon's user lists %s", dir)
	}
}

// asDaemon runs a command as tandem-dns's user and groups.
func asDaemon(t *testing.T, argv ...string) error {
	t.Helper()
	c := daemons["tandem-dns"].confine
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}}
	out, err := cmd.CombinedOutput()
	t.Logf("%v as uid %d: %v %s", argv, c.UID, err, out)
	return err
}

// TestPrepare: a confined daemon's run directory is made and is its own.
func TestPrepare(t *testing.T) {
	testenv.RequireRoot(t)
	p := daemons["tandem-time"]
	p.runDir = filepath.Join(t.TempDir(), "run/tandem/time")
	if err := p.prepare(); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	fi, err := os.Stat(p.runDir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || st.Uid != timeUID || st.Gid != timeUID {
		t.Errorf("run dir %s: dir %v, owner %d:%d; want a directory of %d:%d", p.runDir, fi.IsDir(), st.Uid, st.Gid, timeUID, timeUID)
	}
}
