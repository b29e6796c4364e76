package confine

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"tandem/internal/testenv"
)

// The test binary doubles as the confined child: with TANDEM_CONFINE_TEST
// set it prints its own /proc/self/status and exits.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_CONFINE_TEST") == "status" {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if _, err := os.Stdout.Write(b); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestReadStatus(t *testing.T) {
	f, err := os.Open("testdata/status.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := ReadStatus(f)
	if err != nil {
		t.Fatalf("ReadStatus(testdata/status.txt) = %v", err)
	}
	want := Status{Prm: 0x1fffeffffff, Eff: 0x1fffeffffff, Bnd: 0x1fffeffffff, Groups: []uint32{}}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("ReadStatus(testdata/status.txt) = %+v, want %+v", st, want)
	}
	for _, tc := range []struct{ name, in, err string }{
		{"missing line", "Uid:\t0\t0\t0\t0\n", "no "},
		{"bad mask", strings.Replace(readFixture(t), "CapEff:\t000001fffeffffff", "CapEff:\tzz", 1), "CapEff"},
		{"bad flag", strings.Replace(readFixture(t), "NoNewPrivs:\t0", "NoNewPrivs:\t2", 1), "NoNewPrivs"},
		{"short uid", strings.Replace(readFixture(t), "Uid:\t0\t0\t0\t0", "Uid:\t0", 1), "Uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadStatus(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ReadStatus(%s) = %v, want an error naming %q", tc.name, err, tc.err)
			}
		})
	}
}

func readFixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/status.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNames(t *testing.T) {
	if len(names) != unix.CAP_LAST_CAP+1 {
		t.Errorf("names has %d capabilities, x/sys/unix knows %d", len(names), unix.CAP_LAST_CAP+1)
	}
	for _, tc := range []struct {
		mask uint64
		want string
	}{
		{0, "none"},
		{1<<unix.CAP_NET_BIND_SERVICE | 1<<unix.CAP_SYS_TIME, "cap_net_bind_service,cap_sys_time"},
		{1 << unix.CAP_CHECKPOINT_RESTORE, "cap_checkpoint_restore"},
		{1 << 63, "cap_63"},
	} {
		if got := Names(tc.mask); got != tc.want {
			t.Errorf("Names(%#x) = %q, want %q", tc.mask, got, tc.want)
		}
	}
}

// TestStartProcess: a root child started confined has exactly the kept
// capabilities after its exec, in every set but the ambient one, and
// no_new_privs; the calling thread keeps its own.
func TestStartProcess(t *testing.T) {
	testenv.RequireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadStatus(t)
	keep := Limits{Keep: []uintptr{unix.CAP_CHOWN, unix.CAP_NET_BIND_SERVICE}}
	st := childStatus(t, keep)
	k := keep.Mask()
	if st.Bnd != k || st.Eff != k || st.Prm != k || st.Inh&^k != 0 || st.Amb != 0 || !st.NoNewPrivs {
		t.Errorf("confined root child: bnd %s, eff %s, prm %s, inh %s, amb %s, no_new_privs %v; want %s in bnd, eff and prm, none other, no_new_privs",
			Names(st.Bnd), Names(st.Eff), Names(st.Prm), Names(st.Inh), Names(st.Amb), st.NoNewPrivs, Names(k))
	}
	if after := threadStatus(t); after.Bnd != before.Bnd || after.NoNewPrivs != before.NoNewPrivs {
		t.Errorf("calling thread after StartProcess: bnd %#x, no_new_privs %v; before: %#x, %v", after.Bnd, after.NoNewPrivs, before.Bnd, before.NoNewPrivs)
	}
	if before.Bnd&^k == 0 {
		t.Fatalf("the test's own bounding set %s has nothing to drop: the check above proves nothing", Names(before.Bnd))
	}
}

func TestStartProcessRefusesPdeathsig(t *testing.T) {
	attr := &os.ProcAttr{Sys: &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}}
	if _, err := StartProcess(os.Args[0], os.Args[:1], attr, Limits{}); err != ErrPdeathsig {
		t.Fatalf("StartProcess with Pdeathsig = %v, want ErrPdeathsig", err)
	}
}

func threadStatus(t *testing.T) Status {
	t.Helper()
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := ReadStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// childStatus starts the test binary confined by l and parses the status
// it prints.
func childStatus(t *testing.T, l Limits) Status {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	attr := &os.ProcAttr{Env: []string{"TANDEM_CONFINE_TEST=status"}, Files: []*os.File{nil, w, os.Stderr}}
	p, err := StartProcess(os.Args[0], os.Args[:1], attr, l)
	w.Close()
	if err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	out, _ := io.ReadAll(r)
	if ps, err := p.Wait(); err != nil || !ps.Success() {
		t.Fatalf("confined child: %v %v", ps, err)
	}
	st, err := ReadStatus(strings.NewReader(string(out)))
	if err != nil {
		t.Fatalf("confined child's status: %v\n%s", err, out)
	}
	return st
}
