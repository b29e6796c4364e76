// Package nodeimage is the contract between the image builder and PID 1:
// the description of the image that the builder writes into every
// initramfs and init reads at boot.
package nodeimage

import (
	"encoding/json"
	"fmt"
	"io"
)

// Path is where the description lives inside the initramfs.
const Path = "/etc/tandem/image.json"

// Where PID 1 looks for the node configuration file (docs/node-config.md)
// unless the setting "config" names one: perm first, then the image.
const (
	NodeConfigPerm = "/perm/tandem/node.yaml"
	NodeConfigPath = "/etc/tandem/node.yaml"
)

// SeedDir is where seed files go on the boot partition (FAT32, so any OS
// can write it after flashing an image): seed/NAME on it becomes
// /perm/tandem/NAME at the next boot. Relative to the partition's root.
const SeedDir = "/tandem/seed"

// Partition names (GPT partition labels) on a tandem disk.
const (
	PartBIOS = "tandem-bios"
	PartBoot = "tandem-boot"
	PartPerm = "tandem-perm"
	PartData = "tandem-data"
)

// Config describes one built image.
type Config struct {
	// Name is the recipe name.
	Name string `json:"name"`
	// Role is "data" or "arbitrator".
	Role string `json:"role"`
	// Hostname is the default host name.
	Hostname string `json:"hostname"`
	// Modules are loaded in this order at boot.
	Modules []string `json:"modules"`
	// Services are started in this order.
	Services []Service `json:"services"`
	// DataDisk is the disk for the data partition; empty: the boot disk.
	DataDisk string `json:"data_disk,omitempty"`
	// Workload is the mail workload's template (data images only).
	Workload *Workload `json:"workload,omitempty"`
}

// Workload names the mail workload and its template.
type Workload struct {
	// Kind is "postfix-dovecot" or "zimbra".
	Kind string `json:"kind"`
	// Template is the template's file name in each slot directory of the
	// boot partition, beside the slot's kernel and initramfs, so an update
	// carries its own template and the node reads it from disk, never
	// holding it in RAM.
	Template string `json:"template"`
}

// BootMount is where PID 1 mounts the boot partition.
const BootMount = "/boot"

// TemplatePath is the template's path on a running node booted from slot
// (A or B, $TANDEM_SLOT).
func (w *Workload) TemplatePath(slot string) string {
	return BootMount + "/slot-" + slot + "/" + w.Template
}

// Service is one supervised daemon.
type Service struct {
	Name        string   `json:"name"`
	Path        string   `json:"path"`
	Args        []string `json:"args,omitempty"`
	Notify      bool     `json:"notify,omitempty"`
	WatchdogSec int      `json:"watchdog_sec,omitempty"`
}

// Read decodes a description strictly.
func Read(r io.Reader) (*Config, error) {
	var c Config
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", Path, err)
	}
	return &c, nil
}
