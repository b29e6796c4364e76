package recipe

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"tandem/internal/yamlstrict"
)

// Profile describes one kind of machine: what the kernel needs to drive
// it, where its console is and how it boots.
type Profile struct {
	// Name is the profile's name; it must match the file name.
	Name string `yaml:"name"`
	// Description says what machines the profile is for.
	Description string `yaml:"description"`
	// Boot lists the firmware kinds the image must boot on: bios, uefi.
	Boot []string `yaml:"boot"`
	// Console is the serial console, as the kernel's console= takes it
	// (e.g. "ttyS0,115200"; on PowerEdge the port iDRAC serial-over-LAN uses).
	Console string `yaml:"console"`
	// Modules are kernel modules PID 1 loads at boot, in order; their
	// dependencies are added to the image and loaded first.
	Modules []string `yaml:"modules"`
	// Firmware lists files (relative to /lib/firmware) the hardware needs
	// that Debian's main archive does not ship; the recipe's firmware_dir
	// must supply them. Each is a clean relative path with no "..".
	Firmware []string `yaml:"firmware"`
	// DataDisk is the disk the data partition is created on (e.g.
	// /dev/sdb); empty means the free space of the boot disk.
	DataDisk string `yaml:"data_disk"`
	// Watchdog is the watchdog driver module, if the machine has one.
	Watchdog string `yaml:"watchdog"`
	// KernelArgs are added to the kernel command line for this hardware,
	// checked as a recipe's kernel_args are.
	KernelArgs []string `yaml:"kernel_args"`
}

var (
	boots     = []string{"bios", "uefi"}
	consoleRE = regexp.MustCompile(`^tty(S[0-9]+|[0-9]+)(,[0-9]+[noe]?[78]?)?$`)
	moduleRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// LoadProfile reads and validates a hardware profile.
func LoadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseProfile(path, bytes.NewReader(data))
}

// ParseProfile decodes and validates a profile; name is used in errors.
func ParseProfile(name string, rd io.Reader) (*Profile, error) {
	p := &Profile{}
	doc, err := decode(name, rd, p)
	if err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, doc.Locate(err)
	}
	return p, nil
}

func (p *Profile) validate() error {
	if !nameRE.MatchString(p.Name) {
		return yamlstrict.Errorf("name", "%q must be lower-case letters, digits and dashes", p.Name)
	}
	if len(p.Boot) == 0 {
		return yamlstrict.Errorf("boot", "missing: list bios, uefi or both")
	}
	for i, b := range p.Boot {
		if !slices.Contains(boots, b) {
			return yamlstrict.Errorf(fmt.Sprintf("boot[%d]", i), "%q is not bios or uefi", b)
		}
	}
	if !consoleRE.MatchString(p.Console) {
		return yamlstrict.Errorf("console", "%q is not a console like ttyS0,115200", p.Console)
	}
	for i, m := range p.Modules {
		if !moduleRE.MatchString(m) {
			return yamlstrict.Errorf(fmt.Sprintf("modules[%d]", i), "%q is not a module name", m)
		}
	}
	if p.Watchdog != "" && !slices.Contains(p.Modules, p.Watchdog) {
		return yamlstrict.Errorf("watchdog", "%q is not in modules", p.Watchdog)
	}
	for i, f := range p.Firmware {
		if !filepath.IsLocal(f) || filepath.Clean(f) != f || f == "." {
			return yamlstrict.Errorf(fmt.Sprintf("firmware[%d]", i), "%q is not a clean relative path inside firmware_dir (no leading /, no \"..\", no \".\")", f)
		}
	}
	return checkKernelArgs(p.KernelArgs)
}

// HasBoot reports whether the profile boots with firmware kind k.
func (p *Profile) HasBoot(k string) bool { return slices.Contains(p.Boot, k) }
