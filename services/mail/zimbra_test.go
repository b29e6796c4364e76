package mail

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tandem/internal/container"
)

// standinEnv makes the test binary act as a stand-in zmcontrol that
// follows the exit codes of Zimbra's zmcontrol (see zimbra.go); its value
// picks the behaviour. Real Zimbra is not tested here.
const standinEnv = "TANDEM_ZMCONTROL_STANDIN"

func TestMain(m *testing.M) {
	// The workload's container init is this test binary, re-executed.
	if container.IsInit() {
		os.Exit(container.RunInit())
	}
	if mode := os.Getenv(standinEnv); mode != "" {
		os.Exit(zmcontrolStandin(mode, os.Args[1:]))
	}
	code := m.Run()
	if template.path != "" {
		os.RemoveAll(strings.TrimSuffix(template.path, "/mail.tar.zst"))
	}
	os.Exit(code)
}

func zmcontrolStandin(mode string, args []string) int {
	action := ""
	if len(args) > 0 {
		action = args[0]
	}
	fmt.Println("Host mail.example.test")
	switch {
	case mode == "hang":
		time.Sleep(time.Hour)
	case mode == "weird":
		return 3
	case action == "status" && mode == "stopped":
		fmt.Printf("\tldap                 Stopped\n\tmailbox              Stopped\n\tmta                  Stopped\n")
		return 1
	case action == "status" && mode == "partial":
		fmt.Printf("\tldap                 Running\n\tmailbox              Stopped\n\tmta                  Running\n")
		return 1
	case action == "status":
		fmt.Printf("\tldap                 Running\n\tmailbox              Running\n\tmta                  Running\n")
	case mode == "fail":
		fmt.Printf("\tStarting ldap...Done.\n\tStarting mailbox...FAILED\nmailboxd: java failed\n\n")
		return 1
	default:
		fmt.Printf("\tStarting ldap...Done.\n\tStarting mta...Done.\n")
	}
	return 0
}

// standin returns a zmcontrol runner that executes the stand-in with
// mode, with the timeout the hook gives it.
func standin(mode string) func(context.Context, time.Duration, string) (zmResult, error) {
	return func(ctx context.Context, timeout time.Duration, action string) (zmResult, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], action)
		cmd.Env = append(os.Environ(), standinEnv+"="+mode)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			return zmResult{Exit: -1, Output: string(out), TimedOut: true}, nil
		case errors.As(err, &ee):
			return zmResult{Exit: ee.ExitCode(), Output: string(out)}, nil
		case err != nil:
			return zmResult{}, err
		}
		return zmResult{Output: string(out)}, nil
	}
}

func TestZimbraHooks(t *testing.T) {
	for _, c := range []struct {
		mode, hook string
		short      bool   // run under a short context deadline
		want       string // "" for success, "not running" for ErrNotRunning, else an error substring
	}{
		{"ok", "start", false, ""},
		{"ok", "stop", false, ""},
		{"ok", "monitor", false, ""},
		{"stopped", "monitor", false, "not running"},
		{"partial", "monitor", false, "zmcontrol status: exit 1: "},
		{"fail", "start", false, "zmcontrol start: exit 1: "},
		{"fail", "stop", false, "zmcontrol stop: exit 1: "},
		{"weird", "monitor", false, "zmcontrol status: exit 3"},
		{"weird", "start", false, "zmcontrol start: exit 3"},
		{"hang", "start", true, "zmcontrol start: no result within"},
		{"hang", "stop", true, "zmcontrol stop: no result within"},
		{"hang", "monitor", true, "zmcontrol status: no result within"},
	} {
		t.Run(c.mode+"/"+c.hook, func(t *testing.T) {
			w, err := FromParams(map[string]string{"kind": "zimbra", "root": "/srv/zimbra", "domain": "example.test"})
			if err != nil {
				t.Fatal(err)
			}
			w.zmcontrol = standin(c.mode)
			ctx := context.Background()
			if c.short {
				// The hook's own timeout (minutes) is cut to the caller's
				// deadline: the hanging stand-in is killed then.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			}
			hooks := map[string]func(context.Context) error{"start": w.startZimbra, "stop": w.stopZimbra, "monitor": w.monitorZimbra}
			err = hooks[c.hook](ctx)
			switch c.want {
			case "":
				if err != nil {
					t.Errorf("%s with stand-in %s = %v, want nil", c.hook, c.mode, err)
				}
			case "not running":
				if !errors.Is(err, ErrNotRunning) {
					t.Errorf("%s with stand-in %s = %v, want ErrNotRunning", c.hook, c.mode, err)
				}
			default:
				if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s with stand-in %s = %v, want an error containing %q (not ErrNotRunning)", c.hook, c.mode, err, c.want)
				}
			}
		})
	}
}

func TestZimbraNotInstalled(t *testing.T) {
	w, err := FromParams(map[string]string{"kind": "zimbra", "root": t.TempDir(), "domain": "example.test", "template": "/boot/slot-A/zimbra-installer.tgz"})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "ZCS is not installed in") || !strings.Contains(err.Error(), "/boot/slot-A/zimbra-installer.tgz") {
		t.Errorf("Start without ZCS installed = %v, want an error naming the root and the installer", err)
	}
}

func TestAllStopped(t *testing.T) {
	for out, want := range map[string]bool{
		"Host h\n\tmta   Stopped\n\tldap   Stopped\n": true,
		"Host h\n\tmta   Stopped\n\tldap   Running\n": false,
		"Cannot determine services - exiting":         false,
		"":                                            false,
	} {
		if got := allStopped(out); got != want {
			t.Errorf("allStopped(%q) = %v, want %v", out, got, want)
		}
	}
}
