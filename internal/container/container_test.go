package container

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/confine"
	"tandem/internal/testenv"
)

// probePath is where the test binary lies in a test container's root;
// run under that name it is a probe, not the tests.
const probePath = "/probe"

// TestMain: the test binary is also the container's init (Host.Start
// re-executes it) and, copied into the container's root, its probe.
func TestMain(m *testing.M) {
	if IsInit() {
		os.Exit(RunInit())
	}
	if os.Args[0] == probePath {
		os.Exit(probe(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// probe runs in the container: "cat FILE" prints FILE, "sleep" blocks.
func probe(args []string) int {
	switch {
	case len(args) == 2 && args[0] == "cat":
		b, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := os.Stdout.Write(b); err != nil {
			return 1
		}
		return 0
	case len(args) == 1 && args[0] == "sleep":
		select {}
	}
	fmt.Fprintf(os.Stderr, "probe: bad arguments %q\n", args)
	return 2
}

// TestConfine: in a container with Spec.Confine, its service and what
// exec runs, as root or as a user, have no_new_privs and nothing outside
// Confine.Keep; without Confine they keep the bounding set of the host.
func TestConfine(t *testing.T) {
	testenv.RequireRoot(t)
	keep := confine.Limits{Keep: []uintptr{unix.CAP_NET_BIND_SERVICE, unix.CAP_SETUID}}
	host := hostStatus(t)
	if host.Bnd&^keep.Mask() == 0 {
		t.Fatalf("the test's bounding set %s has nothing to drop", confine.Names(host.Bnd))
	}
	t.Run("confined", func(t *testing.T) {
		h, ctx := start(t, &keep)
		k := keep.Mask()
		root := execStatus(t, h, ctx, "", "/proc/self/status")
		if root.Bnd != k || root.Eff != k || root.Prm != k || root.Amb != 0 || !root.NoNewPrivs {
			t.Errorf("exec as root: bnd %s, eff %s, prm %s, amb %s, no_new_privs %v; want %s in all but amb, no_new_privs",
				confine.Names(root.Bnd), confine.Names(root.Eff), confine.Names(root.Prm), confine.Names(root.Amb), root.NoNewPrivs, confine.Names(k))
		}
		user := execStatus(t, h, ctx, "probe", "/proc/self/status")
		if user.UID[1] != 65534 || user.Bnd != k || user.Eff != 0 || user.Prm != 0 || !user.NoNewPrivs {
			t.Errorf("exec as probe: uid %d, bnd %s, eff %s, prm %s, no_new_privs %v; want uid 65534, bnd %s, nothing else, no_new_privs",
				user.UID[1], confine.Names(user.Bnd), confine.Names(user.Eff), confine.Names(user.Prm), user.NoNewPrivs, confine.Names(k))
		}
		svc := execStatus(t, h, ctx, "", fmt.Sprintf("/proc/%d/status", servicePid(t, h, ctx)))
		if svc.Bnd != k || svc.Eff != k || !svc.NoNewPrivs {
			t.Errorf("service: bnd %s, eff %s, no_new_privs %v; want %s, %s, no_new_privs",
				confine.Names(svc.Bnd), confine.Names(svc.Eff), svc.NoNewPrivs, confine.Names(k), confine.Names(k))
		}
		t.Logf("host: CapBnd %016x; confined container: CapBnd %016x", host.Bnd, svc.Bnd)
	})
	t.Run("not confined", func(t *testing.T) {
		h, ctx := start(t, nil)
		st := execStatus(t, h, ctx, "", "/proc/self/status")
		if st.Bnd != host.Bnd || st.NoNewPrivs {
			t.Errorf("exec as root without Confine: bnd %s, no_new_privs %v; want the host's %s, none", confine.Names(st.Bnd), st.NoNewPrivs, confine.Names(host.Bnd))
		}
	})
}

func hostStatus(t *testing.T) confine.Status {
	t.Helper()
	st, err := confine.ProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// start starts a container whose root holds the probe, with one service
// (the probe, sleeping) and a user "probe" (65534), and stops it at the
// end of the test.
func start(t *testing.T, limits *confine.Limits) (*Host, context.Context) {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "run", "dev", "etc"} {
		testenv.MkdirAll(t, filepath.Join(rootfs, d))
	}
	testenv.WriteFile(t, filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/:/probe\nprobe:x:65534:65534::/:/probe\n"), 0o644)
	copyProbe(t, rootfs)
	h := &Host{Root: dir, Log: "log", Logf: t.Logf}
	spec := Spec{Root: dir, Hostname: "probe", Confine: limits,
		Services: []Service{{Name: "sleeper", Argv: []string{probePath, "sleep"}, StopTimeout: 5 * time.Second}}}
	if err := h.Start(spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(func() {
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Errorf("stop the container: %v", err)
		}
	})
	waitInit(t, h, ctx)
	return h, ctx
}

// waitInit waits until the init answers with its service running.
func waitInit(t *testing.T, h *Host, ctx context.Context) {
	t.Helper()
	for {
		r, _, err := h.Call(ctx, Request{Op: "status"})
		if err == nil && len(r.Services) == 1 && r.Services[0].Running {
			return
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(h.Root, h.Log))
			t.Fatalf("container init not up: %v, %+v\n%s", err, r, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func servicePid(t *testing.T, h *Host, ctx context.Context) int {
	t.Helper()
	r, _, err := h.Call(ctx, Request{Op: "status"})
	if err != nil || len(r.Services) != 1 {
		t.Fatalf("status = %+v, %v", r, err)
	}
	return r.Services[0].Pid
}

// execStatus runs the probe through exec as user to print a status file
// of the container's /proc.
func execStatus(t *testing.T, h *Host, ctx context.Context, user, file string) confine.Status {
	t.Helper()
	r, _, err := h.Call(ctx, Request{Op: "exec", Argv: []string{probePath, "cat", file}, User: user, Timeout: time.Minute})
	if err != nil || r.Exit != 0 {
		t.Fatalf("exec probe cat %s as %q = %+v, %v", file, user, r, err)
	}
	st, err := confine.ReadStatus(strings.NewReader(r.Output))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return st
}

// copyProbe copies the test binary to rootfs/probe, with the shared
// libraries ldd lists for it when it is dynamically linked.
func copyProbe(t *testing.T, rootfs string) {
	t.Helper()
	files := []string{os.Args[0]}
	if dynamic(t, os.Args[0]) {
		testenv.RequireTool(t, "ldd")
		out, err := exec.Command("ldd", os.Args[0]).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", os.Args[0], err)
		}
		files = append(files, libraries(string(out))...)
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(rootfs, f)
		if i == 0 {
			dst = filepath.Join(rootfs, probePath)
		}
		testenv.WriteFile(t, dst, b, 0o755)
	}
}

func dynamic(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

// libraries are the absolute paths in ldd's output: "libc.so.6 =>
// /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2
// (0x...)".
func libraries(ldd string) []string {
	var out []string
	for _, line := range strings.Split(ldd, "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "=>"); i >= 0 && i+1 < len(f) {
			f = f[i+1:]
		}
		if len(f) > 0 && strings.HasPrefix(f[0], "/") {
			out = append(out, f[0])
		}
	}
	return out
}

func TestLibraries(t *testing.T) {
	in := "\tlinux-vdso.so.1 (0x00007ffb7cc60000)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ffb7ca18000)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007ffb7cc62000)\n"
	got := strings.Join(libraries(in), " ")
	if want := "/lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2"; got != want {
		t.Errorf("libraries(ldd output) = %q, want %q", got, want)
	}
}
