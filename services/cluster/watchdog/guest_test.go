package watchdog

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/lab/vmtest"
)

func TestMain(m *testing.M) {
	if vmtest.IsGuest() {
		guestMain() // the QEMU guest of TestGuestReset; never returns
	}
	testenv.LockMachine("services/cluster/watchdog")
	os.Exit(m.Run())
}

// TestGuestReset shows Device against a real watchdog driver, which the
// build machines' kernel lacks: it boots Debian's kernel under QEMU (TCG)
// with an emulated i6300esb whose expiry resets the machine, and this test
// binary as /init (see guestinit_test.go). QEMU runs with -no-reboot, so a
// reset ends it. The guest pets for several timeouts and lives, idles
// after a magic close and lives, then arms again and stops petting like a
// hung node: the watchdog resets it (QEMU reports a WATCHDOG event with
// action reset) before the guest can say it was not.
func TestGuestReset(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, vmtest.Tools...)
	kernel := vmtest.DebianKernel(t)
	initrd := vmtest.Initramfs(t, kernel, "i6300esb")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	vm := vmtest.Start(ctx, t, vmtest.Config{Kernel: kernel, Initrd: initrd,
		Args: []string{"-nic", "none", "-device", "i6300esb", "-action", "watchdog=reset"}})

	seen := map[string]time.Duration{} // mark: when the host saw it
	var order []string
	for line := range vm.Lines() {
		i := strings.Index(line, guestMark)
		if i < 0 {
			continue
		}
		mark, _, _ := strings.Cut(line[i+len(guestMark):], " ")
		seen[mark] = time.Since(vm.Started)
		order = append(order, mark)
		t.Logf("console at %4.1fs: %s", seen[mark].Seconds(), line[i:])
	}
	vm.Wait()
	ended := time.Since(vm.Started)
	events := vm.Events()
	t.Logf("qemu exited at %.1fs; QMP events: %v", ended.Seconds(), events)
	if ctx.Err() != nil {
		t.Fatalf("guest still running after %v; console:\n%s", ended.Round(time.Second), vm.Serial())
	}
	checkGuest(t, seen, order, ended, events, vm.Serial())
}

func checkGuest(t *testing.T, seen map[string]time.Duration, order []string, ended time.Duration, events []vmtest.Event, serial string) {
	t.Helper()
	if _, ok := seen[guestMarkError]; ok {
		t.Fatalf("guest failed; console:\n%s", serial)
	}
	want := []string{"armed", guestMarkPetted, guestMarkDisarmed, guestMarkClosed, guestMarkHung}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("guest said %v, then QEMU exited; want %v, then a reset; console:\n%s", order, want, serial)
	}
	if !hasEvent(events, "WATCHDOG", `"action":"reset"`) {
		t.Errorf("QMP events %v, want a WATCHDOG event with action reset", events)
	}
	if hasEvent(events, "SHUTDOWN", `"reason":"guest-shutdown"`) {
		t.Errorf("QMP events %v: the guest powered itself off, want a watchdog reset", events)
	}
	t.Logf("reset %.1fs after the guest stopped petting (timeout %v)", (ended - seen[guestMarkHung]).Seconds(), guestTimeout)
}

func hasEvent(events []vmtest.Event, name, data string) bool {
	for _, e := range events {
		if e.Event == name && strings.Contains(strings.ReplaceAll(string(e.Data), " ", ""), data) {
			return true
		}
	}
	return false
}
