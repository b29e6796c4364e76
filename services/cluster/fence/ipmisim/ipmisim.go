// Package ipmisim sets up OpenIPMI's BMC simulator (ipmi_sim) for the tests
// and the lab: one BMC with IPMI-over-LAN on an address and port, one
// operator (the least privilege that may power the chassis off, what a
// fencing user gets), and a chassis control program that stands for the
// machine's power.
package ipmisim

import (
	"fmt"
	"os"
	"path/filepath"
)

// BMC is one simulated BMC.
type BMC struct {
	Name string
	// Address (default 127.0.0.1) and Port are its IPMI-over-LAN
	// endpoint, in the network namespace ipmi_sim runs in.
	Address string
	Port    int
	// Chassis is the program ipmi_sim runs as "PROG 0x20 get power" and
	// "PROG 0x20 set power VALUE".
	Chassis        string
	User, Password string
}

// emu is the simulated management controller: a BMC without sensors.
const emu = "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n"

// Write writes b's configuration into dir and returns the ipmi_sim command
// line (to run with dir as its working directory).
func Write(dir string, b BMC) ([]string, error) {
	if b.Address == "" {
		b.Address = "127.0.0.1"
	}
	conf := fmt.Sprintf(`name %q
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true %q %q operator 10 md5
`, b.Name, b.Address, b.Port, b.Chassis, b.User, b.Password)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	lan, sim := filepath.Join(dir, "lan.conf"), filepath.Join(dir, "sim.emu")
	if err := os.WriteFile(lan, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(sim, []byte(emu), 0o644); err != nil {
		return nil, err
	}
	return []string{"ipmi_sim", "-c", lan, "-f", sim, "-s", state, "-n"}, nil
}
