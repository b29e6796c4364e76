// Package replication runs tandem's replicated data volume: DRBD 8.4 (the
// Debian kernel's module, driven through drbd-utils' drbdadm and drbdsetup)
// between the two data nodes. It writes the resource configuration from a
// Config (protocol C, fencing resource-and-stonith, split-brain recovery
// only where it loses nothing), brings the resource up, creates its
// metadata on first use, promotes and demotes it for the cluster's
// resource group, reads its state from drbdsetup events2, and implements
// the fence-peer handler contract on top of a cluster interface.
package replication

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"text/template"
)

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid replication config")

// Config describes one DRBD resource between the two data nodes.
type Config struct {
	// Resource is the DRBD resource name (letters, digits, - and _).
	Resource string
	// Minor is the DRBD minor: the device is /dev/drbd<Minor>.
	Minor int
	// Nodes are the two data nodes; each Name must be the node's host name
	// (uname -n), which DRBD matches against the resource's "on" sections.
	Nodes [2]Node
	// HandlerCommand is the absolute path of the tandem command DRBD runs
	// as its handler: "<HandlerCommand> fence-peer" and
	// "<HandlerCommand> after-resync-target" (see FencePeer and
	// AfterResyncTarget).
	HandlerCommand string
	// ResyncRate is the fixed resync rate (DRBD syntax, e.g. "100M"); the
	// dynamic resync controller is off (c-plan-ahead 0). Empty means 100M.
	ResyncRate string
	// SharedSecret authenticates the peers to each other (DRBD's
	// cram-hmac-alg sha256): a peer with another secret is refused at
	// connect. 16 to 64 letters and digits; the resource file holding it
	// is 0600.
	SharedSecret string
}

// Node is one data node's side of the resource.
type Node struct {
	// Name is the node's host name.
	Name string
	// Address is the replication address and TCP port (IPv4 or IPv6).
	Address netip.AddrPort
	// Disk is the backing block device (the data partition).
	Disk string
}

// DefaultResyncRate is the resync rate when Config.ResyncRate is empty.
const DefaultResyncRate = "100M"

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	secretRE = regexp.MustCompile(`^[A-Za-z0-9]{16,64}$`)
	rateRE   = regexp.MustCompile(`^[0-9]+[kKMG]?$`)
)

// Validate checks the config's meaning; errors name the field and wrap
// ErrConfig.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(c.Resource) {
		return bad("Resource", "%q is not a DRBD resource name", c.Resource)
	}
	if c.Minor < 0 || c.Minor > 1<<20 {
		return bad("Minor", "%d out of range", c.Minor)
	}
	if !strings.HasPrefix(c.HandlerCommand, "/") || strings.ContainsAny(c.HandlerCommand, "\"\\ \n;") {
		return bad("HandlerCommand", "%q must be an absolute path without spaces or quotes", c.HandlerCommand)
	}
	if c.ResyncRate != "" && !rateRE.MatchString(c.ResyncRate) {
		return bad("ResyncRate", "%q is not a DRBD rate", c.ResyncRate)
	}
	if !secretRE.MatchString(c.SharedSecret) {
		// Not quoted: it is a secret.
		return bad("SharedSecret", "want 16 to 64 letters and digits (%d characters given)", len(c.SharedSecret))
	}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("Nodes[%d]", i)
		if !nameRE.MatchString(n.Name) {
			return bad(f+".Name", "%q is not a host name", n.Name)
		}
		if !n.Address.IsValid() || n.Address.Port() == 0 || n.Address.Addr().IsUnspecified() {
			return bad(f+".Address", "%q needs an address and a port", n.Address)
		}
		if !strings.HasPrefix(n.Disk, "/dev/") || strings.ContainsAny(n.Disk, "\"\\ \n;") {
			return bad(f+".Disk", "%q is not a device path", n.Disk)
		}
	}
	if c.Nodes[0].Name == c.Nodes[1].Name {
		return bad("Nodes", "both nodes are named %q", c.Nodes[0].Name)
	}
	if c.Nodes[0].Address == c.Nodes[1].Address {
		return bad("Nodes", "both nodes use %s", c.Nodes[0].Address)
	}
	return nil
}

// Device is the DRBD device path, /dev/drbd<Minor>.
func (c *Config) Device() string { return fmt.Sprintf("/dev/drbd%d", c.Minor) }

// Peer returns the node that is not self, or false if self is neither.
func (c *Config) Peer(self string) (Node, bool) {
	switch self {
	case c.Nodes[0].Name:
		return c.Nodes[1], true
	case c.Nodes[1].Name:
		return c.Nodes[0], true
	}
	return Node{}, false
}

// Local returns the node named self, or false if self is neither.
func (c *Config) Local(self string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == self {
			return n, true
		}
	}
	return Node{}, false
}

// The split-brain policies recover automatically only where no
// acknowledged write can be lost: with no primary, the side that wrote
// nothing since the split gives way; with one primary, the secondary's
// changes are discarded (a secondary cannot have taken writes, since
// protocol C and fencing keep two primaries from existing); with two
// primaries the nodes stay disconnected for a guided manual resolve.
//
// The connection timings are shorter than 8.4's defaults (ping-int 10s,
// connect-int 10s): an idle peer that died is noticed within about 3 s,
// inside the cluster's failover budget, so the new owner need not wait
// 10 s before it may promote; after a heal the nodes reconnect within 2 s.
// ping-timeout is generous (2 s) for guests on a loaded machine.
var resTemplate = template.Must(template.New("res").Parse(`# Generated by tandem services/replication; do not edit.
resource {{.Resource}} {
	disk {
		fencing resource-and-stonith;
		c-plan-ahead 0;
		resync-rate {{.Rate}};
	}
	net {
		protocol C;
		cram-hmac-alg sha256;
		shared-secret "{{.SharedSecret}}";
		ping-int 2;
		ping-timeout 20;
		connect-int 2;
		after-sb-0pri discard-zero-changes;
		after-sb-1pri discard-secondary;
		after-sb-2pri disconnect;
	}
	handlers {
		fence-peer "{{.HandlerCommand}} fence-peer";
		after-resync-target "{{.HandlerCommand}} after-resync-target";
	}
{{- range .Nodes}}
	on {{.Name}} {
		device /dev/drbd{{$.Minor}} minor {{$.Minor}};
		disk {{.Disk}};
		address {{.Family}} {{.Addr}};
		meta-disk internal;
	}
{{- end}}
}
`))

type resNode struct {
	Name, Disk, Family, Addr string
}

// WriteResource writes the DRBD 8.4 resource file for c.
func (c *Config) WriteResource(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return err
	}
	data := struct {
		*Config
		Rate  string
		Nodes []resNode
	}{Config: c, Rate: c.ResyncRate}
	if data.Rate == "" {
		data.Rate = DefaultResyncRate
	}
	for _, n := range c.Nodes {
		fam, addr := "ipv4", n.Address.String()
		if n.Address.Addr().Is6() && !n.Address.Addr().Is4In6() {
			fam = "ipv6"
			addr = fmt.Sprintf("[%s]:%d", n.Address.Addr(), n.Address.Port())
		}
		data.Nodes = append(data.Nodes, resNode{n.Name, n.Disk, fam, addr})
	}
	var b bytes.Buffer
	if err := resTemplate.Execute(&b, data); err != nil {
		return fmt.Errorf("resource %s: %w", c.Resource, err)
	}
	_, err := w.Write(b.Bytes())
	return err
}
