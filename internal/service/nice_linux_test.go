package service

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"tandem/internal/testenv"
)

const niceChild = "TANDEM_TEST_NICE_CHILD"

// TestMain lets the test binary be the process whose threads SetNice
// changes: a Go process, already multi-threaded when main begins.
func TestMain(m *testing.M) {
	if v := os.Getenv(niceChild); v != "" {
		n, _ := strconv.Atoi(v)
		if err := SetNice(0, n); err != nil {
			_, _ = os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		_, _ = os.Stdout.WriteString("set\n")
		_, _ = os.Stdin.Read(make([]byte, 1)) // until the parent has looked
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSetNice: a process that sets its own group's nice (as tandem-cluster
// does) has every thread at that value, the ones the Go runtime started
// before it included. Negative values need root.
func TestSetNice(t *testing.T) {
	testenv.RequireRoot(t)
	const want = -7
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), niceChild+"="+strconv.Itoa(want))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "set\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", "*", "stat"))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("child threads: %v, %v (want a multi-threaded Go process)", tasks, err)
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the parenthesised command: state is field 3, nice 19.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if f[16] != strconv.Itoa(want) {
			t.Errorf("thread %s runs at nice %s, want %d", p, f[16], want)
		}
	}
}
