package confine

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Status is what /proc/PID/status says of a process's privileges.
type Status struct {
	// UID and GID are the real, effective, saved and file-system IDs.
	UID, GID [4]uint32
	// Groups are the supplementary groups.
	Groups []uint32
	// The capability sets, as bit masks (bit n is capability n).
	Inh, Prm, Eff, Bnd, Amb uint64
	// NoNewPrivs is the no_new_privs flag.
	NoNewPrivs bool
}

// ProcStatus reads /proc/PID/status.
func ProcStatus(pid int) (Status, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	return ReadStatus(f)
}

// ReadStatus parses a /proc/PID/status file; every field of Status must
// be in it.
func ReadStatus(r io.Reader) (Status, error) {
	var st Status
	want := map[string]bool{"Uid": true, "Gid": true, "Groups": true, "CapInh": true, "CapPrm": true, "CapEff": true, "CapBnd": true, "CapAmb": true, "NoNewPrivs": true}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[key] {
			continue
		}
		if err := st.set(key, strings.Fields(val)); err != nil {
			return Status{}, fmt.Errorf("status: %s: %w", key, err)
		}
		delete(want, key)
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	for key := range want {
		return Status{}, fmt.Errorf("status: no %s line", key)
	}
	return st, nil
}

func (st *Status) set(key string, f []string) error {
	switch key {
	case "Uid":
		return ids(st.UID[:], f)
	case "Gid":
		return ids(st.GID[:], f)
	case "Groups":
		st.Groups = make([]uint32, len(f))
		return ids(st.Groups, f)
	case "NoNewPrivs":
		if len(f) != 1 || (f[0] != "0" && f[0] != "1") {
			return fmt.Errorf("%q is not 0 or 1", strings.Join(f, " "))
		}
		st.NoNewPrivs = f[0] == "1"
		return nil
	}
	m, err := mask(f)
	switch key {
	case "CapInh":
		st.Inh = m
	case "CapPrm":
		st.Prm = m
	case "CapEff":
		st.Eff = m
	case "CapBnd":
		st.Bnd = m
	case "CapAmb":
		st.Amb = m
	}
	return err
}

// mask parses a Cap line's value: one hex mask.
func mask(f []string) (uint64, error) {
	if len(f) != 1 {
		return 0, fmt.Errorf("want one hex mask, have %q", strings.Join(f, " "))
	}
	return strconv.ParseUint(f[0], 16, 64)
}

func ids(out []uint32, f []string) error {
	if len(f) != len(out) {
		return fmt.Errorf("want %d ids, have %q", len(out), strings.Join(f, " "))
	}
	for i, s := range f {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return err
		}
		out[i] = uint32(n)
	}
	return nil
}

// Names lists the capabilities of mask, lower-case as capsh prints them
// ("cap_chown,cap_kill"); "none" for an empty mask.
func Names(mask uint64) string {
	var out []string
	for c := uintptr(0); c < 64; c++ {
		if mask&(1<<c) != 0 {
			out = append(out, Name(c))
		}
	}
	if out == nil {
		return "none"
	}
	return strings.Join(out, ",")
}

// Name is capability c's name, "cap_N" for one this table does not know.
func Name(c uintptr) string {
	if int(c) < len(names) {
		return names[c]
	}
	return "cap_" + strconv.Itoa(int(c))
}

// names are Linux's capabilities by number (linux/capability.h).
var names = []string{
	"cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner",
	"cap_fsetid", "cap_kill", "cap_setgid", "cap_setuid",
	"cap_setpcap", "cap_linux_immutable", "cap_net_bind_service", "cap_net_broadcast",
	"cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner",
	"cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
	"cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
	"cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod",
	"cap_lease", "cap_audit_write", "cap_audit_control", "cap_setfcap",
	"cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm",
	"cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
	"cap_checkpoint_restore",
}
