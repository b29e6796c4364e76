package network

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/lab/vmtest"
)

// TestGuestBondVLAN needs bonding and 8021q, which the build machines'
// kernel lacks, so it boots Debian's kernel under QEMU (TCG) with this
// test binary as /init (see guestinit_test.go). Loading bonding creates
// an empty balance-rr bond0, which Apply turns active-backup. An active-backup bond
// keeps traffic flowing when its active link's cable is pulled (QEMU's
// set_link on both ends), and a VLAN on the bond carries traffic. The
// guest's NICs are joined only by QEMU hubs: nothing reaches the host.
func TestGuestBondVLAN(t *testing.T) {
	testenv.RequireTool(t, vmtest.Tools...)
	kernel := vmtest.DebianKernel(t)
	initrd := vmtest.Initramfs(t, kernel, "virtio_pci", "virtio_net", "bonding", "8021q")

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var args []string
	for i := range 4 {
		args = append(args, "-netdev", fmt.Sprintf("hubport,id=h%d,hubid=%d", i, i%2),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=h%d,id=nic%d,mac=52:54:00:80:00:0%d", i, i, []int{1, 2, 3, 4}[i]))
	}
	// nic0 (lan0) and nic2 (p0) share hub 0; nic1 (lan1) and nic3 (p1) hub 1.
	vm := vmtest.Start(ctx, t, vmtest.Config{Kernel: kernel, Initrd: initrd, Args: args})

	var res *guestResult
	for line := range vm.Lines() {
		switch {
		case strings.Contains(line, guestMarkPull):
			t.Logf("guest up and bonded after %v; pulling lan0's cable", time.Since(vm.Started).Round(time.Second))
			for _, nic := range []string{"nic0", "nic2"} {
				if err := vm.Monitor("set_link " + nic + " off"); err != nil {
					t.Errorf("pull %s's cable: %v", nic, err)
				}
			}
		case strings.HasPrefix(line, guestMarkResult):
			res = new(guestResult)
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, guestMarkResult)), res); err != nil {
				t.Fatalf("guest result %q: %v", line, err)
			}
		}
	}
	vm.Wait()
	if res == nil {
		t.Fatalf("no result from the guest (%v); serial:\n%s", ctx.Err(), vm.Serial())
	}
	t.Logf("guest finished after %v, failover took %s", time.Since(vm.Started).Round(time.Second), res.FailoverTook)
	if res.Error != "" {
		t.Fatalf("guest: %s\nserial:\n%s", res.Error, vm.Serial())
	}
	checkGuest(t, res)
}

func checkGuest(t *testing.T, res *guestResult) {
	t.Helper()
	first := fmt.Sprint(res.FirstApply)
	for _, want := range []string{"bond0: mode balance-rr -> active-backup", "bond0: primary lan0", "bond0: member lan0", "bond0: member lan1",
		"vlan42: created (VLAN 42 on bond0)", "vlan42: mtu 1500 -> 1400", "bond0: address 10.80.0.2/24", "vlan42: address 10.81.0.2/24"} {
		if !strings.Contains(first, want) {
			t.Errorf("first Apply in the guest = %v, want %q", res.FirstApply, want)
		}
	}
	if len(res.SecondApply) != 0 {
		t.Errorf("second Apply in the guest = %v, want no changes", res.SecondApply)
	}
	state := func(sts []LinkState, name string) LinkState {
		for _, s := range sts {
			if s.Name == name {
				return s
			}
		}
		return LinkState{}
	}
	if l0, l1 := state(res.Before, "lan0"), state(res.Before, "lan1"); l0.Master != "bond0" || l0.BondState != "active" || l1.BondState != "backup" {
		t.Errorf("before the pull: lan0 %+v, lan1 %+v; want lan0 active and lan1 backup in bond0", l0, l1)
	}
	if l0, l1 := state(res.After, "lan0"), state(res.After, "lan1"); l1.BondState != "active" || l0.Oper == "up" {
		t.Errorf("after the pull: lan0 %+v, lan1 %+v; want lan0 down and lan1 active", l0, l1)
	}
	if v := state(res.Before, "vlan42"); v.Kind != "vlan" || v.MTU != 1400 || strings.Join(v.Addresses, " ") != "10.81.0.2/24" {
		t.Errorf("vlan42 = %+v, want a vlan, mtu 1400, 10.81.0.2/24", v)
	}
	if res.ClockStepped < time.Hour-5*time.Second || res.ClockStepped > time.Hour+5*time.Second {
		t.Errorf("guest wall clock moved by %v after SystemClock.Step(1h), want ~1h", res.ClockStepped)
	}
	if res.SlewPending <= 0 || res.SlewPending > 200*time.Millisecond {
		t.Errorf("kernel offset after SystemClock.Slew(200ms) = %v, want in (0, 200ms]", res.SlewPending)
	}
	// About 100 echoes go out on each in 2s (fewer on a loaded machine, as
	// the guest's ticker drops ticks); traffic flows if replies come back.
	for _, c := range []struct {
		name string
		n    int
	}{{"bond before", res.BondBefore}, {"vlan before", res.VLANBefore}, {"bond after", res.BondAfter}, {"vlan after", res.VLANAfter}} {
		if c.n < 10 {
			t.Errorf("echo replies %s the cable pull = %d in 2s, want >= 10", c.name, c.n)
		}
	}
}
