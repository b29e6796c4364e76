// Package recipe loads image recipes and hardware profiles: YAML decoded
// strictly (an unknown field is an error), then validated, every error
// naming the file, the line and what was expected.
package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"tandem/image/overlay"
	"tandem/internal/nodeconfig"
	"tandem/internal/yamlstrict"
)

// Recipe says what to build: which hardware, which role, which outputs.
type Recipe struct {
	// Name names the image; artifacts are named after it.
	Name string `yaml:"name"`
	// Role is "data" (runs the mail service) or "arbitrator" (quorum only).
	Role string `yaml:"role"`
	// Hardware names a profile in the hardware directory (hardware/NAME.yaml).
	Hardware string `yaml:"hardware"`
	// Outputs lists the artifacts to build: raw, qcow2, pxe.
	Outputs []string `yaml:"outputs"`
	// Hostname is the node's host name unless its settings say otherwise.
	Hostname string `yaml:"hostname"`
	// Debian says where kernel, modules, GRUB and tools come from.
	Debian Debian `yaml:"debian"`
	// Packages are extra Debian packages whose programs go into the image;
	// the shared libraries they need are added with them.
	Packages []string `yaml:"packages"`
	// Services are the node daemons PID 1 starts, in order.
	Services []Service `yaml:"services"`
	// Disk sizes the partitions of the raw and qcow2 images.
	Disk Disk `yaml:"disk"`
	// KernelArgs are added to the kernel command line of every slot, one
	// argument per item: printable ASCII, none of GRUB's or iPXE's syntax
	// (scriptChars), and none of the tandem.KEY arguments the image sets
	// itself (imageArgs).
	KernelArgs []string `yaml:"kernel_args"`
	// FirmwareDir is a directory of firmware files the user supplies (for
	// NICs whose firmware Debian ships only in non-free-firmware). Relative
	// paths are relative to the recipe file. Every file the profile lists
	// must be in it, symbolic links resolved.
	FirmwareDir string `yaml:"firmware_dir"`
	// NodeConfig is the node configuration file (docs/node-config.md)
	// baked into the image as its default; a node's own copy on perm
	// overrides it. Relative paths are relative to the recipe file.
	NodeConfig string `yaml:"node_config"`
	// Settings are node settings baked into the image, the last place PID 1
	// looks (after the kernel command line and the perm partition).
	Settings map[string]string `yaml:"settings"`
	// Workload is the mail workload whose template the image carries
	// (data nodes only; default for them: kind postfix-dovecot).
	Workload *Workload `yaml:"workload"`
	// Overlays are the site's file trees laid over what the builder
	// generates (docs/image.md, "Overlays"), in order, a later one
	// winning over an earlier one: directories, each holding rootfs/
	// (laid over the initramfs root) and mail/ (carried in the mail
	// template for the workload; postfix-dovecot only). Relative paths
	// are relative to the recipe file. Load reads and checks them.
	Overlays []string `yaml:"overlays"`

	// Profile is the loaded hardware profile (not part of the YAML).
	Profile *Profile `yaml:"-"`
	// OverlayTrees are the overlays as Load read and checked them, one
	// for each of Overlays (not part of the YAML).
	OverlayTrees []*overlay.Tree `yaml:"-"`
	// Path is the file the recipe was loaded from.
	Path string `yaml:"-"`
}

// Debian names the archive suite packages are taken from.
type Debian struct {
	// Suite is the Debian release, e.g. "bookworm".
	Suite string `yaml:"suite"`
	// Mirror overrides the archive URI found in the machine's apt sources.
	Mirror string `yaml:"mirror"`
	// Keyring is the OpenPGP keyring that signs the suite.
	Keyring string `yaml:"keyring"`
}

// Service is one supervised node daemon.
type Service struct {
	// Name names the service in logs and status.
	Name string `yaml:"name"`
	// Command is a program in the image (a tandem command such as
	// tandem-network, or an absolute path).
	Command string `yaml:"command"`
	// Args are the command's arguments.
	Args []string `yaml:"args"`
	// Notify says the service reports readiness with sd_notify READY=1;
	// otherwise it counts as ready once started.
	Notify bool `yaml:"notify"`
	// WatchdogSec, if set, is the interval within which the service must
	// send WATCHDOG=1, or PID 1 kills and restarts it.
	WatchdogSec int `yaml:"watchdog_sec"`
}

// Workload chooses the mail workload (docs/mail.md).
type Workload struct {
	// Kind is postfix-dovecot (a template built from Debian's packages) or
	// zimbra (the user's ZCS installer, carried for installing onto the
	// replicated volume).
	Kind string `yaml:"kind"`
	// Installer is the ZCS installer tarball (kind zimbra only). Relative
	// paths are relative to the recipe file.
	Installer string `yaml:"installer"`
}

// Workload kinds.
const (
	WorkloadPostfixDovecot = "postfix-dovecot"
	WorkloadZimbra         = "zimbra"
)

// Disk sizes the image's partitions in MiB.
type Disk struct {
	// BootMiB is the boot/ESP partition holding GRUB and slots A and B.
	BootMiB int `yaml:"boot_mib"`
	// PermMiB is the perm partition (ext4) for node config and state.
	PermMiB int `yaml:"perm_mib"`
}

// Defaults, in one place.
const (
	DefaultSuite   = "bookworm"
	DefaultBootMiB = 256
	DefaultPermMiB = 256
)

var (
	roles   = []string{"data", "arbitrator"}
	outputs = []string{"raw", "qcow2", "pxe"}
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// ErrInvalid marks a recipe or profile that does not decode or makes no
// sense (the error of every configuration file, yamlstrict.ErrInvalid).
var ErrInvalid = yamlstrict.ErrInvalid

// decode reads a recipe or profile strictly (yamlstrict).
func decode(name string, rd io.Reader, out any) (*yamlstrict.Doc, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return yamlstrict.Decode(name, data, out)
}

// Load reads the recipe at path and the hardware profile it names from
// hardwareDir (if empty: the "hardware" directory beside the recipe's
// directory).
func Load(path, hardwareDir string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, doc, err := parse(path, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if hardwareDir == "" {
		hardwareDir = filepath.Join(filepath.Dir(path), "..", "hardware")
	}
	r.Profile, err = LoadProfile(filepath.Join(hardwareDir, r.Hardware+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("%s: hardware %q: %w", path, r.Hardware, err)
	}
	if r.Profile.Name != r.Hardware {
		return nil, fmt.Errorf("%s: hardware %q: profile file names itself %q: %w", path, r.Hardware, r.Profile.Name, ErrInvalid)
	}
	if r.FirmwareDir != "" && !filepath.IsAbs(r.FirmwareDir) {
		r.FirmwareDir = filepath.Join(filepath.Dir(path), r.FirmwareDir)
	}
	if r.NodeConfig != "" {
		if !filepath.IsAbs(r.NodeConfig) {
			r.NodeConfig = filepath.Join(filepath.Dir(path), r.NodeConfig)
		}
		f, err := os.Open(r.NodeConfig)
		if err != nil {
			return nil, fmt.Errorf("%s: node_config: %w", path, err)
		}
		_, err = nodeconfig.Load(f, r.NodeConfig)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: node_config: %w", path, err)
		}
	}
	if err := r.checkFirmware(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := r.loadOverlays(); err != nil {
		return nil, doc.Locate(err)
	}
	return r, nil
}

// checkFirmware makes sure every firmware file the profile needs is in the
// user-supplied firmware_dir: a regular file that, symbolic links
// resolved, does not leave the directory (the build copies it into the
// image).
func (r *Recipe) checkFirmware() error {
	if len(r.Profile.Firmware) == 0 {
		return nil
	}
	if r.FirmwareDir == "" {
		return fmt.Errorf("firmware_dir: missing: hardware %q needs firmware Debian ships only in non-free-firmware (%s); put the files in a directory and name it here: %w",
			r.Hardware, strings.Join(r.Profile.Firmware, ", "), ErrInvalid)
	}
	root, err := filepath.EvalSymlinks(r.FirmwareDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("firmware_dir %s: %w: %w", r.FirmwareDir, ErrInvalid, err)
	}
	var missing []string
	for _, f := range r.Profile.Firmware {
		if ok, err := r.firmwareFile(root, f); err != nil {
			return err
		} else if !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("firmware_dir %s: missing %s (needed by hardware %q): %w", r.FirmwareDir, strings.Join(missing, ", "), r.Hardware, ErrInvalid)
	}
	return nil
}

// firmwareFile reports whether firmware_dir (resolved: root, "" if it
// does not exist) has f, and refuses an f that leaves it.
func (r *Recipe) firmwareFile(root, f string) (bool, error) {
	if root == "" {
		return false, nil
	}
	target, err := filepath.EvalSymlinks(filepath.Join(root, f))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("firmware_dir %s: %s: %w: %w", r.FirmwareDir, f, ErrInvalid, err)
	}
	if rel, err := filepath.Rel(root, target); err != nil || !filepath.IsLocal(rel) {
		return false, fmt.Errorf("firmware_dir %s: %s resolves to %s, outside firmware_dir (needed by hardware %q): %w", r.FirmwareDir, f, target, r.Hardware, ErrInvalid)
	}
	if st, err := os.Stat(target); err != nil || !st.Mode().IsRegular() {
		return false, fmt.Errorf("firmware_dir %s: %s is not a regular file (needed by hardware %q): %w", r.FirmwareDir, f, r.Hardware, ErrInvalid)
	}
	return true, nil
}

// Parse decodes and validates a recipe; name is used in errors.
func Parse(name string, rd io.Reader) (*Recipe, error) {
	r, _, err := parse(name, rd)
	return r, err
}

// parse is Parse, also returning the document to place Load's errors.
func parse(name string, rd io.Reader) (*Recipe, *yamlstrict.Doc, error) {
	r := &Recipe{Path: name}
	doc, err := decode(name, rd, r)
	if err != nil {
		return nil, nil, err
	}
	r.setDefaults()
	if err := r.validate(); err != nil {
		return nil, nil, doc.Locate(err)
	}
	return r, doc, nil
}

func (r *Recipe) setDefaults() {
	if r.Debian.Suite == "" {
		r.Debian.Suite = DefaultSuite
	}
	if r.Disk.BootMiB == 0 {
		r.Disk.BootMiB = DefaultBootMiB
	}
	if r.Disk.PermMiB == 0 {
		r.Disk.PermMiB = DefaultPermMiB
	}
	if r.Hostname == "" {
		r.Hostname = r.Name
	}
	if len(r.Outputs) == 0 {
		r.Outputs = []string{"raw"}
	}
	if r.Role == "data" && r.Workload == nil {
		r.Workload = &Workload{Kind: WorkloadPostfixDovecot}
	}
	if w := r.Workload; w != nil && w.Installer != "" && !filepath.IsAbs(w.Installer) {
		w.Installer = filepath.Join(filepath.Dir(r.Path), w.Installer)
	}
}

func (r *Recipe) validate() error {
	if !nameRE.MatchString(r.Name) {
		return yamlstrict.Errorf("name", "%q must be 1 to 63 lower-case letters, digits and dashes", r.Name)
	}
	if !slices.Contains(roles, r.Role) {
		return yamlstrict.Errorf("role", "%q is not one of %s", r.Role, strings.Join(roles, ", "))
	}
	if r.Hardware == "" {
		return yamlstrict.Errorf("hardware", "missing: name a profile in hardware/")
	}
	for i, o := range r.Outputs {
		if !slices.Contains(outputs, o) {
			return yamlstrict.Errorf(fmt.Sprintf("outputs[%d]", i), "%q is not one of %s", o, strings.Join(outputs, ", "))
		}
	}
	if !nameRE.MatchString(r.Hostname) {
		return yamlstrict.Errorf("hostname", "%q is not a valid host name", r.Hostname)
	}
	if r.Disk.BootMiB < 64 || r.Disk.BootMiB > 4096 {
		return yamlstrict.Errorf("disk.boot_mib", "%d is outside 64..4096 (it holds GRUB and two slots)", r.Disk.BootMiB)
	}
	if r.Disk.PermMiB < 16 || r.Disk.PermMiB > 65536 {
		return yamlstrict.Errorf("disk.perm_mib", "%d is outside 16..65536", r.Disk.PermMiB)
	}
	seen := map[string]bool{}
	for i, s := range r.Services {
		f := fmt.Sprintf("services[%d]", i)
		if !nameRE.MatchString(s.Name) {
			return yamlstrict.Errorf(f+".name", "%q must be lower-case letters, digits and dashes", s.Name)
		}
		if seen[s.Name] {
			return yamlstrict.Errorf(f+".name", "%q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if s.Command == "" {
			return yamlstrict.Errorf(f+".command", "missing")
		}
		if s.WatchdogSec < 0 || s.WatchdogSec > 3600 {
			return yamlstrict.Errorf(f+".watchdog_sec", "%d is outside 0..3600", s.WatchdogSec)
		}
	}
	if err := r.validateWorkload(); err != nil {
		return err
	}
	if err := checkKernelArgs(r.KernelArgs); err != nil {
		return err
	}
	if err := checkOverlayPaths(r.Overlays); err != nil {
		return err
	}
	for k := range r.Settings {
		if !settingKeyRE.MatchString(k) {
			return yamlstrict.Errorf("settings."+k, "key must be lower-case letters, digits, '_' and '.'")
		}
	}
	return nil
}

var settingKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)

func (r *Recipe) validateWorkload() error {
	w := r.Workload
	if w == nil {
		return nil
	}
	if r.Role != "data" {
		return yamlstrict.Errorf("workload", "only data nodes run the mail workload (role is %q)", r.Role)
	}
	switch w.Kind {
	case WorkloadPostfixDovecot:
		if w.Installer != "" {
			return yamlstrict.Errorf("workload.installer", "only for kind %s", WorkloadZimbra)
		}
	case WorkloadZimbra:
		if w.Installer == "" {
			return yamlstrict.Errorf("workload.installer", "missing: kind %s needs the path of your ZCS installer tarball", WorkloadZimbra)
		}
		if st, err := os.Stat(w.Installer); err != nil || !st.Mode().IsRegular() {
			return yamlstrict.Errorf("workload.installer", "%s is not a readable file: %v", w.Installer, err)
		}
	default:
		return yamlstrict.Errorf("workload.kind", "%q is not one of %s, %s", w.Kind, WorkloadPostfixDovecot, WorkloadZimbra)
	}
	return nil
}
