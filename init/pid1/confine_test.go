package pid1

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/image/recipe"
	"tandem/init/supervise"
	"tandem/internal/atomicfile"
	"tandem/internal/passwd"
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
// confined daemon's user, that the shared copy of node.yaml opens and
// holds no secret, that nothing on perm opens, and that the copy follows
// a replaced node.yaml but not a broken one.
func TestShareConfig(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "cat", "ls")
	root := testenv.PublicDir(t)
	dir := filepath.Join(root, "perm", "tandem")
	cfg, key := filepath.Join(dir, "node.yaml"), filepath.Join(dir, "ca.key")
	shared := filepath.Join(root, "run", "tandem", "config", "node.yaml")
	testenv.MkdirAll(t, dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	hash, err := passwd.Hash("console secret")
	if err != nil {
		t.Fatal(err)
	}
	const code = "ABCD-EFGH-JKLM-NPQR"
	config := "hostname: a\ncluster:\n  name: c\n  domain: d.org\n  vip: 10.0.0.10\n" +
		"  nodes: [{name: a, address: 10.0.0.1}, {name: b, address: 10.0.0.2}, {name: q, address: 10.0.0.3, role: arbitrator}]\n" +
		"  pairing: {founder: a, codes: {b: " + code + "}}\nnetwork: {links: [{name: eth0, addresses: [10.0.0.1/24]}]}\nconsole: {password: " + hash + "}\n"
	testenv.WriteFile(t, cfg, []byte(config), 0o600)
	testenv.WriteFile(t, key, []byte("secret\n"), 0o600)
	for i := 0; i < 2; i++ { // a second run changes nothing
		if err := shareConfig(cfg, shared, configGID); err != nil {
			t.Fatalf("shareConfig: %v", err)
		}
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		gid  uint32
	}{{shared, 0o640, configGID}, {filepath.Dir(shared), 0o750 | os.ModeSetgid | os.ModeDir, configGID}, {cfg, 0o600, 0}, {dir, 0o700 | os.ModeDir, 0}, {key, 0o600, 0}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; fi.Mode()&(os.ModePerm|os.ModeSetgid|os.ModeDir) != tc.mode || gid != tc.gid {
			t.Errorf("after shareConfig, %s has mode %v, group %d; want %v, %d", tc.path, fi.Mode(), gid, tc.mode, tc.gid)
		}
	}
	out, err := asDaemon(t, "cat", shared)
	if err != nil {
		t.Fatalf("the daemon's user cannot read the shared node config: %v", err)
	}
	for _, secret := range []string{code, hash} {
		if strings.Contains(out, secret) {
			t.Errorf("the shared node config holds a secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "founder: a") {
		t.Errorf("the shared node config lost what is not secret:\n%s", out)
	}
	for _, p := range []string{cfg, key} {
		if _, err := asDaemon(t, "cat", p); err == nil {
			t.Errorf("the daemon's user reads %s", p)
		}
	}
	if _, err := asDaemon(t, "ls", dir); err == nil {
		t.Errorf("the daemon's user lists %s", dir)
	}

	// Replaced: the copy follows. Broken: the last good copy stays.
	in := &Init{log: NewLog(io.Discard, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.followConfig(ctx, cfg, shared, configGID)
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * configPoll); time.Now().Before(deadline); time.Sleep(configPoll / 4) {
			if b, err := os.ReadFile(shared); err == nil && ok(string(b)) {
				return
			}
		}
		b, _ := os.ReadFile(shared)
		t.Fatalf("shared node config after %s:\n%s", what, b)
	}
	if err := atomicfile.Write(cfg, []byte(strings.Replace(config, "10.0.0.10", "10.0.0.11", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("a new VIP", func(s string) bool { return strings.Contains(s, "10.0.0.11") })
	if err := atomicfile.Write(cfg, []byte(strings.Replace(config, "hostname: a", "hostname: A\nbogus: 1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * configPoll)
	waitFor("a broken node.yaml", func(s string) bool { return strings.Contains(s, "10.0.0.11") && !strings.Contains(s, "bogus") })
}

// asDaemon runs a command as tandem-dns's user and groups.
func asDaemon(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	c := daemons["tandem-dns"].confine
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}}
	out, err := cmd.CombinedOutput()
	t.Logf("%v as uid %d: %v %s", argv, c.UID, err, out)
	return string(out), err
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

// TestConfineNodeConfig: a confined daemon's $TANDEM_NODE_CONFIG, in its
// arguments and its environment, is the shared copy; a daemon that runs
// as root gets the node config itself.
func TestConfineNodeConfig(t *testing.T) {
	in := &Init{log: NewLog(io.Discard, 100)}
	env := []string{"A=1", nodeConfigEnv + "=/perm/tandem/node.yaml"}
	for _, tc := range []struct{ path, want string }{
		{"/bin/tandem-dns", sharedConfig},
		{"/bin/tandem-network", "/perm/tandem/node.yaml"},
	} {
		spec := supervise.Spec{Name: "x", Path: tc.path, Env: env}
		if err := in.confine(&spec, []string{"-config", "$" + nodeConfigEnv, "$A"}); err != nil {
			t.Fatal(err)
		}
		if want := []string{"-config", tc.want, "1"}; !slices.Equal(spec.Args, want) {
			t.Errorf("%s: args %q, want %q", tc.path, spec.Args, want)
		}
		var got []string
		for _, kv := range spec.Env {
			if v, ok := strings.CutPrefix(kv, nodeConfigEnv+"="); ok {
				got = append(got, v)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: environment's %s = %q, want just %q", tc.path, nodeConfigEnv, got, tc.want)
		}
	}
	if env[1] != nodeConfigEnv+"=/perm/tandem/node.yaml" {
		t.Errorf("confine changed the shared environment: %q", env)
	}
}
