package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"tandem/image/overlay"
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
			`bad.yaml:3: unknown field "hostnme" (expected one of: debian, disk, firmware_dir, hardware, hostname, kernel_args, name, node_config, outputs, overlays, packages, role, services, settings, workload)`},
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
		{"second document", "name: n\nrole: data\nhardware: h\n---\nname: m\n", `bad.yaml:4: a second YAML document (after "---")`},
		{"overlay empty", "name: n\nrole: data\nhardware: h\noverlays:\n  - a\n  - \"\"\n",
			`bad.yaml:6: overlays[1]: empty: name a directory (relative paths are relative to the recipe file)`},
		{"overlay newline", "name: n\nrole: data\nhardware: h\noverlays: [\"a\\nb\"]\n",
			`bad.yaml:4: overlays[0]: "a\nb": not UTF-8, or holds a control character`},
		{"overlay twice", "name: n\nrole: data\nhardware: h\noverlays: [../o/a, ../o/b, ../o/./a]\n",
			`bad.yaml:4: overlays[2]: ../o/./a is listed twice (overlays[0])`},
		{"overlays not a list", "name: n\nrole: data\nhardware: h\noverlays: ../o/a\n", "bad.yaml: line 4: cannot unmarshal !!str `../o/a` into []string"},
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

// kernel_args reach grub.cfg and the iPXE script verbatim: each item is
// one argument with none of their syntax, and none of the image's own
// tandem.KEY arguments.
func TestKernelArgsErrors(t *testing.T) {
	const head = "name: n\nrole: data\nhardware: h\nkernel_args:\n  - quiet\n  - "
	for _, c := range []struct{ name, arg, want string }{
		{"comment", `"a#b"`, `bad.yaml:6: kernel_args[1]: "a#b": '#' is not allowed: GRUB and iPXE read it as syntax`},
		{"double quote", `'x="a"'`, `bad.yaml:6: kernel_args[1]: "x=\"a\"": '"' is not allowed`},
		{"single quote", `"x='a'"`, `bad.yaml:6: kernel_args[1]: "x='a'": '\'' is not allowed`},
		{"variable", `"x=${tandem_slot}"`, `bad.yaml:6: kernel_args[1]: "x=${tandem_slot}": '$' is not allowed`},
		{"backslash", `'x=a\b'`, `bad.yaml:6: kernel_args[1]: "x=a\\b": '\\' is not allowed`},
		{"command separator", `"quiet;reboot"`, `bad.yaml:6: kernel_args[1]: "quiet;reboot": ';' is not allowed`},
		{"newline", `"a\nb"`, `bad.yaml:6: kernel_args[1]: "a\nb": '\n' is not allowed: one argument per item`},
		{"control character", `"a\x01b"`, `bad.yaml:6: kernel_args[1]: "a\x01b": '\x01' is not allowed: one argument per item`},
		{"two arguments", `"quiet tandem.slot=B"`, `bad.yaml:6: kernel_args[1]: "quiet tandem.slot=B": ' ' is not allowed: one argument per item`},
		{"non-ascii", `"x=é"`, `bad.yaml:6: kernel_args[1]: "x=é": 'é' is not allowed: one argument per item`},
		{"empty", `""`, `bad.yaml:6: kernel_args[1]: "": empty`},
		{"slot", "tandem.slot=B", `bad.yaml:6: kernel_args[1]: "tandem.slot=B": the image sets tandem.slot itself`},
		{"fallback", "tandem.fallback", `bad.yaml:6: kernel_args[1]: "tandem.fallback": the image sets tandem.fallback itself`},
		{"boot", "tandem.boot=pxe", `bad.yaml:6: kernel_args[1]: "tandem.boot=pxe": the image sets tandem.boot itself`},
		{"rescue", "tandem.rescue=1", `bad.yaml:6: kernel_args[1]: "tandem.rescue=1": the image sets tandem.rescue itself`},
		{"bad setting name", "tandem.Host=x", `bad.yaml:6: kernel_args[1]: "tandem.Host=x": "Host" is not a setting name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", strings.NewReader(head+c.arg+"\n"))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(kernel_args: [quiet, %s]) = %v\nwant an ErrInvalid starting %s", c.arg, err, c.want)
			}
		})
	}
}

func TestKernelArgsGood(t *testing.T) {
	args := []string{"quiet", "console=ttyS1,115200n8", "acpi_osi=!Windows", "dyndbg=+p", "tandem.hostname=n-1", "tandem.slotted=1", "tandem.config"}
	y := "name: n\nrole: data\nhardware: h\nkernel_args:\n  - " + strings.Join(args, "\n  - ") + "\n"
	r, err := Parse("good.yaml", strings.NewReader(y))
	if err != nil {
		t.Fatalf("Parse(%s) = %v, want no error", y, err)
	}
	if !slices.Equal(r.KernelArgs, args) {
		t.Errorf("KernelArgs = %q, want %q", r.KernelArgs, args)
	}
}

// imageArgs names every tandem.KEY argument the image's boot files write.
func TestImageArgsComplete(t *testing.T) {
	re := regexp.MustCompile(`tandem\.[a-z_]+=`)
	for _, f := range []string{"../grub/config.go", "../artifacts.go", "../../cmd/tandem/boot.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := re.FindAllString(string(b), -1)
		if f != "../../cmd/tandem/boot.go" && len(found) == 0 {
			t.Errorf("%s: no tandem.KEY= argument found; does the image still write them there?", f)
		}
		for _, a := range found {
			if !slices.Contains(imageArgs, strings.TrimSuffix(a, "=")) {
				t.Errorf("%s writes %s, which imageArgs does not list", f, a)
			}
		}
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
		{"firmware absolute", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [ok.fw, /etc/shadow]\n", `p.yaml:4: firmware[1]: "/etc/shadow" is not a clean relative path inside firmware_dir`},
		{"firmware dotdot", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [../x.fw]\n", `p.yaml:4: firmware[0]: "../x.fw" is not a clean relative path`},
		{"firmware dotdot inside", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [bnx2/../../x.fw]\n", `p.yaml:4: firmware[0]: "bnx2/../../x.fw" is not a clean relative path`},
		{"firmware unclean", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [./x.fw]\n", `p.yaml:4: firmware[0]: "./x.fw" is not a clean relative path`},
		{"firmware dot", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [.]\n", `p.yaml:4: firmware[0]: "." is not a clean relative path`},
		{"firmware empty", "name: p\nboot: [bios]\nconsole: ttyS0\nfirmware: [\"\"]\n", `p.yaml:4: firmware[0]: "" is not a clean relative path`},
		{"kernel args", "name: p\nboot: [bios]\nconsole: ttyS0\nkernel_args: [\"a$b\"]\n", `p.yaml:4: kernel_args[0]: "a$b": '$' is not allowed`},
		{"second document", "name: p\nboot: [bios]\nconsole: ttyS0\n---\n", `p.yaml:4: a second YAML document`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseProfile("p.yaml", strings.NewReader(c.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("ParseProfile() error = %v\nwant prefix %s", err, c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
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

// A firmware file the profile lists cannot leave firmware_dir through a
// symbolic link: the build would copy that host file into the image.
func TestLoadFirmwareLinks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"hardware", "recipes", "fwreal/bnx2"} {
		testenv.MkdirAll(t, filepath.Join(dir, d))
	}
	testenv.WriteFile(t, filepath.Join(dir, "hardware/hw.yaml"), []byte("name: hw\nboot: [bios]\nconsole: ttyS0\nfirmware: [bnx2/a.fw, bnx2/b.fw]\n"), 0o644)
	testenv.WriteFile(t, filepath.Join(dir, "fwreal/bnx2/a.fw"), []byte("a"), 0o644)
	testenv.WriteFile(t, filepath.Join(dir, "secret"), []byte("host file"), 0o600)
	symlink := func(target, link string) {
		t.Helper()
		link = filepath.Join(dir, link)
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	// firmware_dir is itself a link to fwreal: links to it are resolved
	// before the comparison.
	symlink("fwreal", "firmware")
	recipe := filepath.Join(dir, "recipes/r.yaml")
	testenv.WriteFile(t, recipe, []byte("name: n\nrole: data\nhardware: hw\nfirmware_dir: ../firmware\n"), 0o644)
	for _, c := range []struct{ name, target, want string }{
		{"link inside", "a.fw", ""},
		{"relative link out", "../../secret", "bnx2/b.fw resolves to " + filepath.Join(dir, "secret") + ", outside firmware_dir"},
		{"absolute link out", filepath.Join(dir, "secret"), "bnx2/b.fw resolves to " + filepath.Join(dir, "secret") + ", outside firmware_dir"},
		{"dangling link", "nothere.fw", "missing bnx2/b.fw"},
		{"directory", ".", "bnx2/b.fw is not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			symlink(c.target, "fwreal/bnx2/b.fw")
			_, err := Load(recipe, "")
			if c.want == "" {
				if err != nil {
					t.Fatalf("Load() = %v, want no error", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), recipe+": firmware_dir ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load() = %v\nwant an ErrInvalid starting with %s: firmware_dir and containing %q", err, recipe, c.want)
			}
		})
	}
}

// Load reads each overlay and refuses what it may not hold, every error
// naming the recipe file, the overlay's line and field, and the path.
func TestLoadOverlays(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "hardware/hw.yaml"), []byte("name: hw\nboot: [bios]\nconsole: ttyS0\n"), 0o644)
	testenv.WriteFile(t, filepath.Join(dir, "zcs.tgz"), []byte("zcs"), 0o644)
	for p, data := range map[string]string{
		"a/rootfs/etc/motd": "a", "a/mail/etc/postfix/header_checks": "a",
		"b/rootfs/etc/motd": "b", "b/rootfs/usr/local/bin/tool": "b",
		"rootonly/rootfs/etc/issue":                "r",
		"dirmotd/rootfs/etc/motd/x":                "d",
		"reserved/rootfs/etc/tandem/settings.yaml": "hostname: evil\n",
	} {
		testenv.WriteFile(t, filepath.Join(dir, "overlays", p), []byte(data), 0o644)
	}
	testenv.MkdirAll(t, filepath.Join(dir, "overlays/link/rootfs/etc"))
	if err := os.Symlink("../../../../secret", filepath.Join(dir, "overlays/link/rootfs/etc/shadow")); err != nil {
		t.Fatal(err)
	}
	recipe := filepath.Join(dir, "recipes/r.yaml")
	load := func(head, overlays string) (*Recipe, error) {
		testenv.WriteFile(t, recipe, []byte(head+"hardware: hw\noverlays:\n"+overlays), 0o644)
		return Load(recipe, "")
	}
	r, err := load("name: n\nrole: data\n", "  - ../overlays/a\n  - "+filepath.Join(dir, "overlays/b")+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OverlayTrees) != 2 || r.OverlayTrees[1].Name != recipe+": overlays[1]: "+filepath.Join(dir, "overlays/b") || r.OverlayTrees[0].Files() != 2 {
		t.Errorf("Load() overlays = %+v, want a (2 files) and b, named by the recipe and field", r.OverlayTrees)
	}
	if _, err := load("name: n\nrole: arbitrator\n", "  - ../overlays/rootonly\n"); err != nil {
		t.Errorf("Load(arbitrator with a rootfs/ overlay) = %v, want no error", err)
	}
	for _, c := range []struct{ name, head, overlays, want string }{
		{"missing", "name: n\nrole: data\n", "  - ../overlays/a\n  - ../overlays/nope\n",
			":6: overlays[1]: ../overlays/nope: no such directory " + filepath.Join(dir, "overlays/nope")},
		{"symlink", "name: n\nrole: data\n", "  - ../overlays/link\n",
			`:5: overlays[0]: ../overlays/link: rootfs/etc/shadow: a symbolic link (to "../../../../secret")`},
		{"reserved", "name: n\nrole: data\n", "  - ../overlays/reserved\n",
			":5: overlays[0]: ../overlays/reserved: rootfs/etc/tandem: /etc/tandem is what the builder writes for PID 1"},
		{"file and directory", "name: n\nrole: data\n", "  - ../overlays/a\n  - ../overlays/dirmotd\n",
			":6: overlays[1]: ../overlays/dirmotd: rootfs/etc/motd: a directory where overlays[0] (../overlays/a) has a file"},
		{"mail on an arbitrator", "name: n\nrole: arbitrator\n", "  - ../overlays/a\n",
			":5: overlays[0]: ../overlays/a: mail/: mail overlays go into the postfix-dovecot template, and the arbitrator role runs no mail workload"},
		{"mail with zimbra", "name: n\nrole: data\nworkload: {kind: zimbra, installer: ../zcs.tgz}\n", "  - ../overlays/b\n  - ../overlays/a\n",
			":7: overlays[1]: ../overlays/a: mail/: mail overlays go into the postfix-dovecot template, and workload kind zimbra carries its installer as it is"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(c.head, c.overlays)
			if err == nil || !strings.HasPrefix(err.Error(), recipe+c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load() = %v\nwant an ErrInvalid starting %s%s", err, recipe, c.want)
			}
		})
	}
}

// The repository's example overlay loads (testdata/overlay-example.yaml:
// no shipped recipe lists an overlay).
func TestExampleOverlay(t *testing.T) {
	r, err := Load("testdata/overlay-example.yaml", "../../hardware")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, part := range []string{overlay.RootFS, overlay.Mail} {
		for _, f := range r.OverlayTrees[0].Part(part) {
			if !f.Mode.IsDir() {
				got = append(got, part+"/"+f.Path) // its mode is the checkout's
			}
		}
	}
	if want := []string{"rootfs/etc/motd", "mail/etc/postfix/header_checks"}; !slices.Equal(got, want) {
		t.Errorf("overlays/example holds %q, want %q", got, want)
	}
}
