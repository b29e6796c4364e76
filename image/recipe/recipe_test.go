package recipe

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

const good = `name: node
role: data
hardware: kvm-guest
outputs: [raw, pxe]
disk:
  boot_mib: 128
services:
  - name: network
    command: tandem-network
`

func TestParseGood(t *testing.T) {
	r, err := Parse("good.yaml", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if r.Hostname != "node" || r.Debian.Suite != DefaultSuite || r.Disk.BootMiB != 128 || r.Disk.PermMiB != DefaultPermMiB ||
		r.Workload == nil || r.Workload.Kind != WorkloadPostfixDovecot {
		t.Errorf("Parse(good) = %+v, want defaults filled in", r)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown field", "name: n\nrole: data\nhostnme: x\n",
			`bad.yaml:3: unknown field "hostnme" (expected one of: debian, disk, firmware_dir, hardware, hostname, kernel_args, name, node_config, outputs, packages, role, services, settings, workload)`},
		{"unknown nested field", "name: n\nrole: data\nhardware: h\ndisk:\n  boot: 100\n",
			`bad.yaml:5: unknown field "boot" in disk (expected one of: boot_mib, perm_mib)`},
		{"unknown field in list", "name: n\nservices:\n  - name: a\n    cmd: x\n",
			`bad.yaml:4: unknown field "cmd" in services[0] (expected one of: args, command, name, notify, watchdog_sec)`},
		{"bad role", "name: n\nrole: dta\nhardware: h\n",
			`bad.yaml:2: role: "dta" is not one of data, arbitrator`},
		{"bad output", "name: n\nrole: data\nhardware: h\noutputs: [raw, iso]\n",
			`bad.yaml:4: outputs[1]: "iso" is not one of raw, qcow2, pxe`},
		{"boot too small", "name: n\nrole: data\nhardware: h\ndisk:\n  boot_mib: 10\n",
			`bad.yaml:5: disk.boot_mib: 10 is outside 64..4096 (it holds GRUB and two slots)`},
		{"duplicate service", "name: n\nrole: data\nhardware: h\nservices:\n  - {name: a, command: x}\n  - {name: a, command: y}\n",
			`bad.yaml:6: services[1].name: "a" is listed twice`},
		{"missing command", "name: n\nrole: data\nhardware: h\nservices:\n  - {name: a}\n",
			`bad.yaml:5: services[0].command: missing`},
		{"type error", "name: n\nrole: data\nhardware: h\ndisk:\n  boot_mib: lots\n",
			"bad.yaml: line 5: cannot unmarshal !!str `lots` into int"},
		{"bad name", "name: Node_1\n", `bad.yaml:1: name: "Node_1" must be 1 to 63 lower-case letters, digits and dashes`},
		{"missing hardware", "name: n\nrole: data\n", `bad.yaml: hardware: missing: name a profile in hardware/`},
		{"empty", "", "bad.yaml: empty file"},
		{"workload kind", "name: n\nrole: data\nhardware: h\nworkload:\n  kind: exim\n",
			`bad.yaml:5: workload.kind: "exim" is not one of postfix-dovecot, zimbra`},
		{"workload unknown field", "name: n\nrole: data\nhardware: h\nworkload: {kind: zimbra, instaler: x}\n",
			`bad.yaml:4: unknown field "instaler" in workload (expected one of: installer, kind)`},
		{"zimbra without installer", "name: n\nrole: data\nhardware: h\nworkload:\n  kind: zimbra\n",
			`bad.yaml:5: workload.installer: missing: kind zimbra needs the path of your ZCS installer tarball`},
		{"zimbra installer missing", "name: n\nrole: data\nhardware: h\nworkload:\n  kind: zimbra\n  installer: /nonexistent/zcs.tgz\n",
			`bad.yaml:6: workload.installer: /nonexistent/zcs.tgz is not a readable file`},
		{"workload on arbitrator", "name: n\nrole: arbitrator\nhardware: h\nworkload: {kind: postfix-dovecot}\n",
			`bad.yaml:4: workload: only data nodes run the mail workload (role is "arbitrator")`},
		{"not a mapping", "- a\n- b\n", "bad.yaml:1: expected a mapping of fields at the top"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", strings.NewReader(c.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("Parse() error = %v\nwant prefix %s", err, c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

func TestProfileErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"no boot", "name: p\nconsole: ttyS0\n", "p.yaml: boot: missing: list bios, uefi or both"},
		{"bad boot", "name: p\nboot: [bios, efi]\nconsole: ttyS0\n", `p.yaml:2: boot[1]: "efi" is not bios or uefi`},
		{"bad console", "name: p\nboot: [bios]\nconsole: com1\n", `p.yaml:3: console: "com1" is not a console like ttyS0,115200`},
		{"watchdog not loaded", "name: p\nboot: [bios]\nconsole: ttyS0\nmodules: [ext4]\nwatchdog: softdog\n", `p.yaml:5: watchdog: "softdog" is not in modules`},
		{"bad module", "name: p\nboot: [bios]\nconsole: ttyS0\nmodules: [ext4, \"a b\"]\n", `p.yaml:4: modules[1]: "a b" is not a module name`},
		{"unknown field", "name: p\nmodule: [x]\n", `p.yaml:2: unknown field "module" (expected one of: boot, console, data_disk, description, firmware, kernel_args, modules, name, watchdog)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseProfile("p.yaml", strings.NewReader(c.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("ParseProfile() error = %v\nwant prefix %s", err, c.want)
			}
		})
	}
}

// TestShippedRecipes loads every recipe of the repository with its
// profile; r710-node must name the firmware it is missing.
func TestShippedRecipes(t *testing.T) {
	for _, name := range []string{"kvm-node", "kvm-arbitrator"} {
		if _, err := Load(filepath.Join("..", "..", "recipes", name+".yaml"), ""); err != nil {
			t.Errorf("Load(%s): %v", name, err)
		}
	}
	_, err := Load("../../recipes/r710-node.yaml", "")
	if err == nil || !strings.Contains(err.Error(), "firmware_dir") || !strings.Contains(err.Error(), "bnx2/bnx2-mips-09-6.2.1b.fw") {
		t.Errorf("Load(r710-node) without firmware = %v, want an error naming firmware_dir and the missing files", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	testenv.MkdirAll(t, filepath.Join(dir, "hardware"))
	testenv.MkdirAll(t, filepath.Join(dir, "recipes"))
	write := func(p, s string) string {
		p = filepath.Join(dir, p)
		testenv.WriteFile(t, p, []byte(s), 0o644)
		return p
	}
	write("hardware/hw.yaml", "name: hw\nboot: [bios]\nconsole: ttyS0\nfirmware: [fw/a.bin, fw/b.bin]\n")
	write("hardware/other.yaml", "name: renamed\nboot: [bios]\nconsole: ttyS0\n")
	testenv.MkdirAll(t, filepath.Join(dir, "firmware", "fw"))
	write("firmware/fw/a.bin", "x")
	for _, c := range []struct{ name, yaml, want string }{
		{"no profile", "name: n\nrole: data\nhardware: nope\n", `hardware "nope": open `},
		{"profile renamed", "name: n\nrole: data\nhardware: other\n", `hardware "other": profile file names itself "renamed"`},
		{"no firmware dir", "name: n\nrole: data\nhardware: hw\n", `firmware_dir: missing: hardware "hw" needs firmware`},
		{"missing firmware", "name: n\nrole: data\nhardware: hw\nfirmware_dir: ../firmware\n", `missing fw/b.bin (needed by hardware "hw")`},
		{"bad node config", "name: n\nrole: data\nhardware: hw\nfirmware_dir: ../firmware\nnode_config: node.yaml\n", `node_config: `},
	} {
		t.Run(c.name, func(t *testing.T) {
			write("recipes/node.yaml", "hostname: x\nnetwork: {links: [{name: eth0, dhcp: maybe}]}\n")
			p := write("recipes/r.yaml", c.yaml)
			_, err := Load(p, "")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), p) {
				t.Fatalf("Load() error = %v\nwant it to start with %s and contain %q", err, p, c.want)
			}
		})
	}
}
