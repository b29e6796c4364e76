// Package nodeconfig is the node configuration file: the one YAML document
// that tells a node's bring-up services (network, time, DNS) who the node is,
// how its links are wired and which cluster it serves. It decodes strictly
// (unknown fields are errors) and validates meaning; every error names the
// file and the field. docs/node-config.md documents it with an example,
// which is also testdata/example.yaml.
package nodeconfig

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"tandem/internal/yamlstrict"
)

// ErrInvalid is wrapped by every decoding or validation error (the error
// of every configuration file, yamlstrict.ErrInvalid).
var ErrInvalid = yamlstrict.ErrInvalid

// Config is the whole node configuration file.
type Config struct {
	// Hostname is the node's host name (a lower-case DNS label of at most
	// 32 characters), set in the kernel, /etc/hostname and /etc/hosts.
	// With cluster.nodes set it is one of them.
	Hostname string `yaml:"hostname"`
	// Cluster describes the cluster the node belongs to; the DNS service
	// serves its zone.
	Cluster Cluster `yaml:"cluster"`
	// Network is the node's links, addresses, routes and resolver settings.
	Network Network `yaml:"network"`
	// Time is the NTP client's settings.
	Time Time `yaml:"time"`
	// DNS is the split DNS server's settings.
	DNS DNS `yaml:"dns"`
	// Console is the node's console settings.
	Console Console `yaml:"console"`
}

// Console is who may use the node's console beyond watching it.
type Console struct {
	// Password is the console password's hash, as "tandem passwd" prints
	// it (PBKDF2-SHA512 in GRUB's notation): the rescue shell
	// (tandem.rescue=1) asks for the password, and GRUB's menu entries
	// cannot be edited without it (user root). Without it there is no
	// rescue shell and GRUB is not locked.
	Password string `yaml:"password"`
}

// Cluster is what the node knows about its cluster at boot. The cluster
// daemon may later publish a newer VIP or member list (see the DNS
// service's -cluster file).
type Cluster struct {
	// Name is the cluster's name (a lower-case DNS label of at most 32
	// characters).
	Name string `yaml:"name"`
	// Domain is the cluster's DNS domain, served authoritatively by the DNS
	// service (for example "mail.example.org").
	Domain string `yaml:"domain"`
	// Service is the label of the mail service's name inside Domain; its A
	// record is the VIP and the domain's MX points to it. Default "mail".
	Service string `yaml:"service"`
	// VIP is the service's virtual IPv4 address.
	VIP string `yaml:"vip"`
	// Nodes are the cluster's members, each with a name inside Domain:
	// none, or two data nodes and one arbitrator.
	Nodes []Node `yaml:"nodes"`
	// Pairing, when set, makes the cluster daemon pair this node on its
	// first start with no console input (docs/cluster.md).
	Pairing *Pairing `yaml:"pairing"`
	// LeaseTTL is the group's lease time (default 3s, whole seconds from
	// 2s to 120s); the cluster daemon's other timings scale with it. Raise
	// it where nodes can stall for seconds (emulated or overloaded
	// machines): failover takes about lease_ttl plus the workload's start.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// Pairing is unattended pairing: the founder creates the cluster and
// accepts Codes; every other node joins the founder with its Code.
type Pairing struct {
	// Founder names the node (in Nodes) that creates the cluster.
	Founder string `yaml:"founder"`
	// Codes are the one-time codes the founder accepts, by the name each
	// pairs, in tandemctl's form ABCD-EFGH-JKLM-NPQR: a name of Nodes
	// pairs that node, any other name an administrator's certificate.
	Codes map[string]string `yaml:"codes"`
	// Code is this node's own code, when it is not the founder.
	Code string `yaml:"code"`
}

// Node is one cluster member.
type Node struct {
	// Name is the member's host name (a lower-case DNS label of at most
	// 32 characters).
	Name string `yaml:"name"`
	// Address is the member's IPv4 address (no other member's, not the
	// VIP).
	Address string `yaml:"address"`
	// Role is "data" (default) or "arbitrator".
	Role string `yaml:"role"`
	// Fence is the device that powers this member off (a data node's),
	// used by its peer: the survivor fences the owner it lost and takes
	// over without waiting for the lease (docs/cluster.md, "Fencing").
	Fence *Fence `yaml:"fence"`
}

// Fence is a member's fencing device: its BMC (iDRAC, iLO, any IPMI 2.0
// controller) reached over IPMI-over-LAN.
type Fence struct {
	// Agent is "ipmi".
	Agent string `yaml:"agent"`
	// Address is the BMC's IPv4 address or DNS name; Port its UDP port
	// (default 623).
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	// User logs in to the BMC (at most 16 bytes, IPMI's limit) with the
	// password in PasswordFile: an absolute path on the peer, mode 0600,
	// its first line the password.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// CipherSuite of RMCP+ (default 3: HMAC-SHA1 with AES-128).
	CipherSuite int `yaml:"cipher_suite"`
}

// Network is the node's network configuration.
type Network struct {
	// Links are the physical interfaces the node configures.
	Links []Link `yaml:"links"`
	// Bonds are active-backup bonds over links.
	Bonds []Bond `yaml:"bonds"`
	// VLANs are 802.1Q interfaces on a link or a bond.
	VLANs []VLAN `yaml:"vlans"`
	// Routes are static routes.
	Routes []Route `yaml:"routes"`
	// Nameservers are written to resolv.conf, before any a DHCP lease
	// gives.
	Nameservers []string `yaml:"nameservers"`
	// Search is resolv.conf's search list.
	Search []string `yaml:"search"`
}

// Addressing is what every kind of interface can carry.
type Addressing struct {
	// MTU is the interface's MTU; 0 leaves the kernel's.
	MTU int `yaml:"mtu"`
	// DHCP asks for an IPv4 lease on the interface.
	DHCP bool `yaml:"dhcp"`
	// Addresses are static addresses in CIDR form, IPv4 or IPv6.
	Addresses []string `yaml:"addresses"`
}

// Link is a physical interface.
type Link struct {
	// Name is the interface's name. With MAC set, the interface that has
	// that MAC is renamed to Name; otherwise Name matches the kernel's name.
	Name string `yaml:"name"`
	// MAC matches the interface by hardware address.
	MAC        string `yaml:"mac"`
	Addressing `yaml:",inline"`
}

// Bond is an active-backup bond.
type Bond struct {
	// Name is the bond's interface name.
	Name string `yaml:"name"`
	// Members are the names of the links the bond enslaves (at least one).
	Members []string `yaml:"members"`
	// Primary is the member preferred as active; default the first member.
	Primary string `yaml:"primary"`
	// MIIMon is the link monitoring interval. Default 100ms.
	MIIMon     time.Duration `yaml:"miimon"`
	Addressing `yaml:",inline"`
}

// VLAN is an 802.1Q interface.
type VLAN struct {
	// Name is the VLAN interface's name.
	Name string `yaml:"name"`
	// Link is the name of the link or bond it sits on.
	Link string `yaml:"link"`
	// ID is the VLAN ID, 1 to 4094.
	ID         int `yaml:"id"`
	Addressing `yaml:",inline"`
}

// Route is a static route.
type Route struct {
	// To is the destination in CIDR form ("0.0.0.0/0" for the default).
	To string `yaml:"to"`
	// Via is the gateway address; empty for an on-link route.
	Via string `yaml:"via"`
	// Dev is the interface name; required for on-link routes.
	Dev string `yaml:"dev"`
	// Metric is the route's priority; lower wins.
	Metric int `yaml:"metric"`
}

// Time configures the NTP client.
type Time struct {
	// Servers are NTP servers (host or host:port), queried together.
	Servers []string `yaml:"servers"`
	// StepThreshold: an offset larger than this is stepped at boot; smaller
	// ones, and all after the first sync, are slewed. Default 1s.
	StepThreshold time.Duration `yaml:"step_threshold"`
	// PollInterval is the time between polls. Default 64s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxOffset: the clock counts as synchronised while the last measured
	// offset is within it. Default 100ms.
	MaxOffset time.Duration `yaml:"max_offset"`
}

// DNS configures the split DNS server.
type DNS struct {
	// Listen are the addresses (host:port) it serves on, UDP and TCP.
	// Default ":53".
	Listen []string `yaml:"listen"`
	// Forwarders are upstream resolvers (host:port or host) for names
	// outside the cluster domain. None: such names are refused.
	Forwarders []string `yaml:"forwarders"`
	// Allow are the client networks (CIDR) answered at all. Loopback is
	// always allowed; everyone else is refused. Never empty for a server
	// that listens beyond loopback, so it is never an open resolver.
	Allow []string `yaml:"allow"`
	// TTL of the cluster zone's records, whole seconds up to 24h. Default
	// 60s.
	TTL time.Duration `yaml:"ttl"`
	// CacheSize is the number of forwarded answers cached, at most 65536.
	// Default 4096.
	CacheSize int `yaml:"cache_size"`
	// MaxUpstream bounds the queries forwarded at once (1 to 4096); a
	// query that needs an upstream beyond it is answered SERVFAIL at once.
	// Default 64.
	MaxUpstream int `yaml:"max_upstream"`
	// RateLimit limits the UDP responses to each client network.
	RateLimit RateLimit `yaml:"rate_limit"`
	// OpenResolver must be true for Allow to hold a network of every
	// address (0.0.0.0/0 or ::/0): the world may then query the zone and,
	// with Forwarders, use the server as its resolver. Default false.
	OpenResolver bool `yaml:"open_resolver"`
}

// RateLimit is response-rate limiting over UDP, per client network (a /32
// for IPv4, a /56 for IPv6), like BIND's RRL. Loopback and TCP are never
// limited (a TCP client cannot spoof its address).
type RateLimit struct {
	// ResponsesPerSecond is each client network's rate (1 to 1000000),
	// with a burst of as many. Default 100.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Slip: every Slip-th response dropped is sent instead as an empty
	// answer with TC=1, so that a real client retries over TCP (1 to 10;
	// 1 truncates every one). Default 2.
	Slip int `yaml:"slip"`
	// MaxSources bounds the client networks tracked (1 to 1048576); past
	// it an idle one, or else any, is forgotten. Default 20000.
	MaxSources int `yaml:"max_sources"`
}

// Load decodes and validates a node config read from r; name (the file's
// path) prefixes every error.
func Load(r io.Reader, name string) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	var c Config
	doc, err := yamlstrict.Decode(name, data, &c)
	if err != nil && !errors.Is(err, yamlstrict.ErrEmpty) { // empty: all defaults
		return nil, err
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, doc.Locate(err)
	}
	return &c, nil
}

// LoadFile reads and validates the node config at path.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	defer f.Close()
	return Load(f, path)
}

// Defaults of the optional settings, in one place.
const (
	DefaultService       = "mail"
	DefaultMIIMon        = 100 * time.Millisecond
	DefaultStepThreshold = time.Second
	DefaultPollInterval  = 64 * time.Second
	DefaultMaxOffset     = 100 * time.Millisecond
	DefaultDNSListen     = ":53"
	DefaultDNSTTL        = 60 * time.Second
	DefaultCacheSize     = 4096
	// The DNS server's abuse limits (docs/services.md).
	DefaultDNSMaxUpstream = 64
	DefaultDNSRate        = 100
	DefaultDNSSlip        = 2
	DefaultDNSMaxSources  = 20000
)

func (c *Config) setDefaults() {
	if c.Cluster.Service == "" {
		c.Cluster.Service = DefaultService
	}
	for i := range c.Network.Bonds {
		b := &c.Network.Bonds[i]
		if b.MIIMon == 0 {
			b.MIIMon = DefaultMIIMon
		}
		if b.Primary == "" && len(b.Members) > 0 {
			b.Primary = b.Members[0]
		}
	}
	t := &c.Time
	if t.StepThreshold == 0 {
		t.StepThreshold = DefaultStepThreshold
	}
	if t.PollInterval == 0 {
		t.PollInterval = DefaultPollInterval
	}
	if t.MaxOffset == 0 {
		t.MaxOffset = DefaultMaxOffset
	}
	d := &c.DNS
	if len(d.Listen) == 0 {
		d.Listen = []string{DefaultDNSListen}
	}
	if d.TTL == 0 {
		d.TTL = DefaultDNSTTL
	}
	if d.CacheSize == 0 {
		d.CacheSize = DefaultCacheSize
	}
	if d.MaxUpstream == 0 {
		d.MaxUpstream = DefaultDNSMaxUpstream
	}
	rl := &d.RateLimit
	if rl.ResponsesPerSecond == 0 {
		rl.ResponsesPerSecond = DefaultDNSRate
	}
	if rl.Slip == 0 {
		rl.Slip = DefaultDNSSlip
	}
	if rl.MaxSources == 0 {
		rl.MaxSources = DefaultDNSMaxSources
	}
}
