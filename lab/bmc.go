package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"tandem/internal/atomicfile"
	"tandem/services/cluster/fence/ipmisim"
)

// The lab's BMCs: each data node has one, an OpenIPMI ipmi_sim on the
// host's side of the lab network at BMCAddr, which the peer reaches over
// IPMI-over-LAN exactly as a data node reaches the other's iDRAC. Its
// power is the node's QEMU: "power off" kills it (SIGKILL: the plug
// pulled, as fencing means), "power status" is whether it runs. A powered
// off node stays off until Boot, as a fenced server stays off until an
// admin powers it on.
//
// Why not QEMU's ipmi-bmc-extern with ipmi_sim's VM codec (OpenIPMI's own
// QEMU set-up): there ipmi_sim powers the guest on by starting QEMU itself
// (startcmd), while the lab starts every QEMU (a reset is a fresh one);
// and the guests need no in-band IPMI device, only the LAN side.

// BMCUser is the user of every lab BMC: an operator, the least privilege
// that may power the chassis off.
const BMCUser = "fence"

// BMCAddr is node n's BMC address on the lab network: its own plus ten.
func BMCAddr(n Node) netip.Addr {
	a := n.Addr.As4()
	a[3] += 10
	return netip.AddrFrom4(a)
}

// pidFile is where the lab keeps the PID of node's current QEMU, for its
// BMC.
func (l *Lab) pidFile(node string) string { return filepath.Join(l.opts.Dir, node, "qemu.pid") }

// chassis is the BMC's chassis_control program for node: ipmi_sim runs
// it as "PROG 0x20 get power" and "PROG 0x20 set power VALUE".
const chassis = `#!/bin/sh
# Written by the lab: %[1]s's power, as its BMC sees it.
pidf=%[2]q
on() { p=$(cat "$pidf" 2>/dev/null) && [ -n "$p" ] && grep -qs qemu "/proc/$p/comm"; }
case "$2 $3" in
"get power") if on; then echo power:1; else echo power:0; fi ;;
"set power") v=$(echo "$4" | tr -d '"')
	if [ "$v" = 0 ] && on; then
		echo "$(date -u +%%FT%%T.%%NZ) power off: kill -9 $(cat "$pidf")" >> %[3]q
		kill -9 "$(cat "$pidf")"
	fi ;;
esac
exit 0
`

// startBMCs starts a BMC for each data node that has a password in
// Options.BMCPasswords, on the host's port in the lab's namespace.
func (l *Lab) startBMCs() error {
	for _, n := range l.opts.Nodes {
		pw, ok := l.opts.BMCPasswords[n.Name]
		if !ok || n.Arbitrator() {
			continue
		}
		addr := BMCAddr(n)
		if err := ip("-n", l.netns, "addr", "add", netip.PrefixFrom(addr, Subnet.Bits()).String(), "dev", "lab0"); err != nil {
			return fmt.Errorf("lab: bmc of %s: %w", n.Name, err)
		}
		dir := filepath.Join(l.opts.Dir, n.Name, "bmc")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("lab: bmc of %s: %w", n.Name, err)
		}
		ctl := filepath.Join(dir, "chassis")
		script := fmt.Sprintf(chassis, n.Name, l.pidFile(n.Name), filepath.Join(dir, "power.log"))
		if err := os.WriteFile(ctl, []byte(script), 0o700); err != nil {
			return fmt.Errorf("lab: bmc of %s: %w", n.Name, err)
		}
		args, err := ipmisim.Write(dir, ipmisim.BMC{Name: "bmc-" + n.Name, Address: addr.String(), Port: 623,
			Chassis: ctl, User: BMCUser, Password: pw})
		if err != nil {
			return fmt.Errorf("lab: bmc of %s: %w", n.Name, err)
		}
		log, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
		if err != nil {
			return fmt.Errorf("lab: bmc of %s: %w", n.Name, err)
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", l.netns}, args...)...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
		if err := cmd.Start(); err != nil {
			log.Close()
			return fmt.Errorf("lab: bmc of %s: ipmi_sim: %w", n.Name, err)
		}
		go func() { _ = cmd.Wait(); log.Close() }() // Stop kills it; its log says why it ended otherwise
		l.mu.Lock()
		l.bmcs = append(l.bmcs, cmd.Process)
		l.mu.Unlock()
		l.opts.Logf("lab: %s's BMC at %s:623 (ipmi_sim pid %d)", n.Name, addr, cmd.Process.Pid)
	}
	return nil
}

// writePID records node's current QEMU for its BMC.
func (l *Lab) writePID(node string, pid int) error {
	return atomicfile.Write(l.pidFile(node), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}
