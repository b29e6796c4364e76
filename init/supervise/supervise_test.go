package supervise

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"tandem/internal/service"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The test binary doubles as the services: TANDEM_TEST_SERVICE picks a role.
func TestMain(m *testing.M) {
	switch os.Getenv("TANDEM_TEST_SERVICE") {
	case "notify":
		time.Sleep(100 * time.Millisecond)
		_, _ = daemon.SdNotify(false, "STATUS=working\nREADY=1")
		for {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			time.Sleep(200 * time.Millisecond)
		}
	case "norestart":
		os.Exit(service.NoRestart)
	case "silent":
		select {}
	case "confined":
		reportConfinement()
		select {}
	}
	os.Exit(m.Run())
}

// reap plays PID 1's reaper for the test process.
func reap(ctx context.Context, s *Supervisor) {
	for ctx.Err() == nil {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		s.Exited(pid, ws)
	}
}

func spec(name, role string, notify bool) Spec {
	return Spec{Name: name, Path: os.Args[0], Env: []string{"TANDEM_TEST_SERVICE=" + role}, Notify: notify}
}

func newSup(t *testing.T, specs ...Spec) (*Supervisor, context.Context) {
	t.Helper()
	return newSupOpts(t, Options{NotifyDir: t.TempDir(), MinBackoff: 50 * time.Millisecond, Logf: t.Logf, StopTimeout: 2 * time.Second}, specs...)
}

// newSupOpts starts a supervisor of specs with opt, stopped at the end of
// the test.
func newSupOpts(t *testing.T, opt Options, specs ...Spec) (*Supervisor, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(specs, opt)
	if err != nil {
		t.Fatal(err)
	}
	go reap(ctx, s)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(); cancel() })
	return s, ctx
}

func waitReady(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if nr := s.WaitReady(ctx); nr != nil {
		t.Fatalf("WaitReady: not ready: %v", nr)
	}
}

func TestReadyRestartAndStop(t *testing.T) {
	s, _ := newSup(t, spec("a", "notify", true), spec("b", "silent", false))
	waitReady(t, s)
	st := s.States()
	if st[0].Status != "working" || !st[1].Ready || st[0].PID == 0 {
		t.Fatalf("States() = %+v, want a with STATUS working, b ready", st)
	}
	old := st[0].PID
	syscall.Kill(old, syscall.SIGKILL)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st = s.States()
		if st[0].PID != 0 && st[0].PID != old && st[0].Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service a not restarted and ready after SIGKILL: %+v", st[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st[0].Restarts != 1 {
		t.Errorf("Restarts = %d, want 1", st[0].Restarts)
	}
	s.Stop()
	for _, x := range s.States() {
		if x.PID != 0 {
			t.Errorf("after Stop, %s still has pid %d", x.Name, x.PID)
		}
	}
}

func TestNoRestartExitCode(t *testing.T) {
	s, _ := newSup(t, spec("once", "norestart", true))
	waitReady(t, s) // a service stopped for good does not block readiness
	time.Sleep(300 * time.Millisecond)
	st := s.States()[0]
	if !st.Stopped || st.Restarts != 0 {
		t.Fatalf("after exit %d: %+v, want stopped, no restarts", service.NoRestart, st)
	}
}

func TestMissedWatchdogKills(t *testing.T) {
	sp := spec("w", "silent", false)
	sp.Watchdog = 500 * time.Millisecond
	s, _ := newSup(t, sp)
	deadline := time.Now().Add(20 * time.Second)
	for s.States()[0].Restarts == 0 {
		if time.Now().After(deadline) {
			t.Fatal("service that never pings its watchdog was not killed and restarted")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
