package sysinit

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	var ran, log []string
	step := func(name string, optional bool, err error) Step {
		return Step{Name: name, Optional: optional, Do: func(context.Context) error { ran = append(ran, name); return err }}
	}
	logf := func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }
	boom := errors.New("boom")
	err := Run(context.Background(), []Step{
		step("a", false, nil), step("b", true, boom), step("c", false, boom), step("d", false, nil),
	}, logf)
	if !errors.Is(err, boom) || err.Error() != "c: boom" {
		t.Errorf("Run = %v, want c's error, named", err)
	}
	if strings.Join(ran, "") != "abc" {
		t.Errorf("ran %v, want a, b, c (the optional b's failure goes on, c's stops)", ran)
	}
	if len(log) != 3 || !strings.HasPrefix(log[0], "a: ok") || log[1] != "b: boom (going on)" || log[2] != "c: FAILED: boom" {
		t.Errorf("log = %q", log)
	}
}

func TestReap(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	got := map[int]syscall.WaitStatus{}
	for { // until the child has exited; go test's timeout bounds it
		Reap(func(p int, ws syscall.WaitStatus) { got[p] = ws })
		if _, ok := got[pid]; ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ws := got[pid]; !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("Reap saw %v for pid %d, want exit status 3", ws, pid)
	}
}
