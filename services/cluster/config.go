// Package cluster is the cluster daemon of a tandem node: embedded etcd on
// the three members (two data nodes and the arbitrator) under mutual TLS
// with a cluster CA, pairing with one-time codes, the group's lease with a
// fencing token, the resources (VIP, OCF agents) run in order under the
// decision core (package core), and the mTLS API tandemctl talks to.
package cluster

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"tandem/internal/nodeconfig"
	"tandem/internal/yamlstrict"
	"tandem/services/cluster/agent/ocf"
	"tandem/services/cluster/core"
)

// Config is a node's cluster configuration file (YAML, decoded strictly).
type Config struct {
	// Cluster names the cluster; nodes of different clusters never join.
	Cluster string `yaml:"cluster"`
	// Node is this node's name, unique in the cluster.
	Node string `yaml:"node"`
	// Role is "data" or "arbitrator"; an arbitrator never runs resources.
	Role core.Role `yaml:"role"`
	// Address is the IPv4 address the other members reach this node on.
	Address string `yaml:"address"`
	// PeerPort is etcd's peer port (default 2380).
	PeerPort int `yaml:"peer_port"`
	// ClientPort is etcd's client port (default 2379).
	ClientPort int `yaml:"client_port"`
	// APIPort is the mTLS API and pairing port (default 7443).
	APIPort int `yaml:"api_port"`
	// Watchdog is a device path (default /dev/watchdog), record:PATH
	// (tests) or none (arbitrator only).
	Watchdog string `yaml:"watchdog"`
	// Timing holds the lease timings; see core.Timing.Validate.
	Timing TimingConfig `yaml:"timing"`
	// Policy holds the Pacemaker-style policies.
	Policy PolicyConfig `yaml:"policy"`
	// Group is the resource group, in start order (data nodes only).
	Group []ResourceConfig `yaml:"group"`
	// Nodes are the cluster's members as planned (cluster.nodes of the
	// node config): two data nodes and one arbitrator, this node among
	// them. Only they pair as nodes, and only their names reach etcd.
	Nodes []NodeSpec `yaml:"nodes"`
	// LearnerTimeout is how long a node that was admitted but never
	// started may hold etcd's one learner place before a member removes
	// it (default 5m); until then every other join waits.
	LearnerTimeout time.Duration `yaml:"learner_timeout"`
	// TimeStatus is tandem-time's status file (time.json): with it, a
	// data node takes the group only while the file says its clock is
	// synchronised. Empty: no such guard.
	TimeStatus string `yaml:"time_status"`
	// Fencing says, per peer data node, how to power it off (STONITH).
	// With it, a node whose owner stopped answering fences it and takes
	// over without waiting for the takeover margin.
	Fencing map[string]FenceConfig `yaml:"fencing"`
}

// FenceConfig is one peer's fencing device: the node config's fields
// (agent "ipmi": IPMI 2.0 over LAN, e.g. an iDRAC), with where they came
// from.
type FenceConfig struct {
	nodeconfig.Fence `yaml:",inline"`
	// Field names the device in errors: where it was configured
	// (fencing.NODE, or cluster.nodes[N].fence in the node config).
	Field string `yaml:"-"`
}

// field is where the device for node was configured, for errors.
func (f FenceConfig) field(node string) string {
	if f.Field != "" {
		return f.Field
	}
	return "fencing." + node
}

// NodeSpec is one planned member.
type NodeSpec struct {
	Name    string    `yaml:"name"`
	Role    core.Role `yaml:"role"`
	Address string    `yaml:"address"`
}

// planned returns the planned member called name.
func (c *Config) planned(name string) (NodeSpec, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeSpec{}, false
}

// nodeNames are the planned members' names.
func (c *Config) nodeNames() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// TimingConfig is the YAML form of core.Timing; zero fields get defaults.
type TimingConfig struct {
	LeaseTTL        time.Duration  `yaml:"lease_ttl"`
	RenewInterval   time.Duration  `yaml:"renew_interval"`
	RenewRetries    *int           `yaml:"renew_retries"`
	StopMargin      time.Duration  `yaml:"stop_margin"`
	WatchdogTimeout time.Duration  `yaml:"watchdog_timeout"`
	TakeoverMargin  *time.Duration `yaml:"takeover_margin"`
	// PollInterval is how often the cluster state is read (default 200ms).
	PollInterval time.Duration `yaml:"poll_interval"`
}

// PolicyConfig holds the group's policies.
type PolicyConfig struct {
	// MigrationThreshold: failures of a resource on a node before the
	// group leaves it (default 3; 0 means never).
	MigrationThreshold *int `yaml:"migration_threshold"`
	// FailureTimeout is how long a node's fail count for a resource lasts
	// after its last failure (default 10m; 0s: until a cleanup). Without
	// it, transient failures on both data nodes keep the group down for
	// good.
	FailureTimeout *time.Duration `yaml:"failure_timeout"`
	// ResourceStickiness is how much the group prefers to stay (default 100).
	ResourceStickiness *int `yaml:"resource_stickiness"`
	// PreferredNode and PreferredScore: the group moves back to the
	// preferred node only if its score beats the stickiness.
	PreferredNode  string `yaml:"preferred_node"`
	PreferredScore int    `yaml:"preferred_score"`
}

// ResourceConfig is one resource of the group.
type ResourceConfig struct {
	// Name is the resource's name (OCF_RESOURCE_INSTANCE).
	Name string `yaml:"name"`
	// Agent is a built-in agent (vip, drbd, fs, mail) or "ocf:PROVIDER:TYPE".
	Agent string `yaml:"agent"`
	// Params are the agent's parameters (vip: address, interface).
	Params map[string]string `yaml:"params"`
	// Timeouts per action (start, stop, monitor); OCF meta-data fills gaps.
	Timeouts map[string]time.Duration `yaml:"timeouts"`
	// MonitorInterval is how often monitor runs (default 2s).
	MonitorInterval time.Duration `yaml:"monitor_interval"`
	// MonitorFailures is how many monitors in a row must fail before the
	// failure counts (default 1). A probe that times out on a loaded
	// machine is then retried, not answered with a restart that loads it
	// more; a resource its monitor reports not running counts at once.
	MonitorFailures int `yaml:"monitor_failures"`
	// OCFRoot overrides OCF_ROOT for this resource.
	OCFRoot string `yaml:"ocf_root"`
}

// Defaults for the fields of Config; all defaults come from here.
const (
	DefaultPeerPort        = 2380
	DefaultClientPort      = 2379
	DefaultAPIPort         = 7443
	DefaultWatchdog        = "/dev/watchdog"
	DefaultPollInterval    = 200 * time.Millisecond
	DefaultMonitorInterval = 2 * time.Second
	DefaultMigration       = 3
	DefaultFailureTimeout  = 10 * time.Minute
	DefaultStickiness      = 100
	DefaultLearnerTimeout  = 5 * time.Minute
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// ErrConfig marks configuration errors (the error of every configuration
// file, yamlstrict.ErrInvalid).
var ErrConfig = yamlstrict.ErrInvalid

// LoadConfig decodes a config strictly (unknown fields are errors), fills
// defaults and validates; errors name file and field.
func LoadConfig(r io.Reader, file string) (*Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", file, err)
	}
	var c Config
	doc, err := yamlstrict.Decode(file, b, &c)
	if err != nil {
		return nil, err
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, doc.Locate(err)
	}
	return &c, nil
}

func (c *Config) defaults() {
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.PeerPort, DefaultPeerPort)
	setInt(&c.ClientPort, DefaultClientPort)
	setInt(&c.APIPort, DefaultAPIPort)
	if c.Watchdog == "" {
		c.Watchdog = DefaultWatchdog
		if c.Role == core.RoleArbitrator {
			c.Watchdog = "none"
		}
	}
	if c.Timing.PollInterval == 0 {
		c.Timing.PollInterval = DefaultPollInterval
	}
	if c.LearnerTimeout == 0 {
		c.LearnerTimeout = DefaultLearnerTimeout
	}
	for i := range c.Group {
		if c.Group[i].MonitorInterval == 0 {
			c.Group[i].MonitorInterval = DefaultMonitorInterval
		}
		if c.Group[i].MonitorFailures == 0 {
			c.Group[i].MonitorFailures = 1
		}
	}
}

// CoreTiming returns the timings with defaults filled in.
func (c *Config) CoreTiming() core.Timing {
	t := core.DefaultTiming()
	if c.Timing.LeaseTTL != 0 {
		t.LeaseTTL = c.Timing.LeaseTTL
	}
	if c.Timing.RenewInterval != 0 {
		t.RenewInterval = c.Timing.RenewInterval
	}
	if c.Timing.RenewRetries != nil {
		t.RenewRetries = *c.Timing.RenewRetries
	}
	if c.Timing.StopMargin != 0 {
		t.StopMargin = c.Timing.StopMargin
	}
	if c.Timing.WatchdogTimeout != 0 {
		t.WatchdogTimeout = c.Timing.WatchdogTimeout
	}
	if c.Timing.TakeoverMargin != nil {
		t.TakeoverMargin = *c.Timing.TakeoverMargin
	}
	return t
}

// The waits of the daemon's etcd requests, derived from the lease (see
// docs/cluster.md, "Timing rules"). A request that etcd answers late is
// no failure of the cluster: on a loaded node a linearizable read or a
// lease grant can take seconds, and a daemon that gave up after one
// second read "no quorum" while it had one, and its alive key, granted
// and put in two seconds, never came back.
//
// pollTimeout bounds one read of the cluster state (a quarter lease, at
// least 1s); quorumGrace is how long reads may fail before this node
// says it has no quorum (half a lease); requestTimeout bounds the other
// requests (acquire, release, fail counts, published states, alive key,
// promotion, bootstrap: half a lease, at least 2s). A renewal may take
// until lease_ttl - stop_margin (renew).
func (c *Config) pollTimeout() time.Duration { return max(time.Second, c.CoreTiming().LeaseTTL/4) }
func (c *Config) quorumGrace() time.Duration { return c.CoreTiming().LeaseTTL / 2 }
func (c *Config) requestTimeout() time.Duration {
	return max(2*time.Second, c.CoreTiming().LeaseTTL/2)
}

// FailureTimeout returns policy.failure_timeout with its default.
func (c *Config) FailureTimeout() time.Duration {
	if c.Policy.FailureTimeout != nil {
		return *c.Policy.FailureTimeout
	}
	return DefaultFailureTimeout
}

// CoreConfig returns the decision core's configuration.
func (c *Config) CoreConfig() core.Config {
	cc := core.Config{
		Node: c.Node, Role: c.Role, Timing: c.CoreTiming(),
		MigrationThreshold: DefaultMigration, Stickiness: DefaultStickiness,
		Preferred: c.Policy.PreferredNode, PreferredScore: c.Policy.PreferredScore,
		Fencing: len(c.Fencing) > 0, ClockGuard: c.TimeStatus != "",
	}
	if p := c.Policy.MigrationThreshold; p != nil {
		cc.MigrationThreshold = *p
	}
	if p := c.Policy.ResourceStickiness; p != nil {
		cc.Stickiness = *p
	}
	for _, r := range c.Group {
		cc.Resources = append(cc.Resources, r.Name)
	}
	return cc
}

func (c *Config) validate() error {
	switch {
	case !nameRE.MatchString(c.Cluster):
		return yamlstrict.Errorf("cluster", "%q: want a lower-case name of letters, digits and dashes", c.Cluster)
	case !nameRE.MatchString(c.Node):
		return yamlstrict.Errorf("node", "%q: want a lower-case name of letters, digits and dashes", c.Node)
	case c.Role != core.RoleData && c.Role != core.RoleArbitrator:
		return yamlstrict.Errorf("role", "%q: want data or arbitrator", c.Role)
	}
	if a, err := netip.ParseAddr(c.Address); err != nil || !a.Is4() {
		return yamlstrict.Errorf("address", "%q: want an IPv4 address", c.Address)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"peer_port", c.PeerPort}, {"client_port", c.ClientPort}, {"api_port", c.APIPort}} {
		if p.v < 1 || p.v > 65535 {
			return yamlstrict.Errorf(p.name, "%d: out of range", p.v)
		}
	}
	if c.LearnerTimeout < 10*time.Second {
		return yamlstrict.Errorf("learner_timeout", "%v: at least 10s", c.LearnerTimeout)
	}
	if c.TimeStatus != "" && !filepath.IsAbs(c.TimeStatus) {
		return yamlstrict.Errorf("time_status", "%q is not an absolute path", c.TimeStatus)
	}
	t := c.CoreTiming()
	if t.LeaseTTL%time.Second != 0 {
		return yamlstrict.Errorf("timing.lease_ttl", "%v: etcd leases count whole seconds", t.LeaseTTL)
	}
	if err := t.Validate(); err != nil {
		return yamlstrict.Errorf("timing", "%v", err)
	}
	if c.Timing.PollInterval <= 0 || c.Timing.PollInterval >= t.LeaseTTL/2 {
		return yamlstrict.Errorf("timing.poll_interval", "%v: must be positive and under half of lease_ttl", c.Timing.PollInterval)
	}
	if c.Role == core.RoleArbitrator && len(c.Group) > 0 {
		return yamlstrict.Errorf("group", "an arbitrator never runs resources; remove its group")
	}
	if c.Role == core.RoleData && c.Watchdog == "none" {
		return yamlstrict.Errorf("watchdog", "none: a data node needs a watchdog")
	}
	for node, f := range c.Fencing {
		field := f.field(node)
		switch {
		case c.Role != core.RoleData:
			return yamlstrict.Errorf(field, "only data nodes fence")
		case node == c.Node:
			return yamlstrict.Errorf(field, "a node cannot fence itself")
		case f.Agent != "ipmi":
			return yamlstrict.Errorf(field+".agent", "%q: want ipmi", f.Agent)
		case f.Address == "":
			return yamlstrict.Errorf(field+".address", "required")
		case f.User == "" || f.PasswordFile == "":
			return yamlstrict.Errorf(field, "user and password_file are required")
		}
	}
	if m := c.Policy.MigrationThreshold; m != nil && *m < 0 {
		return yamlstrict.Errorf("policy.migration_threshold", "%d: must not be negative", *m)
	}
	if f := c.Policy.FailureTimeout; f != nil && (*f < 0 || *f%time.Second != 0) {
		return yamlstrict.Errorf("policy.failure_timeout", "%v: want whole seconds, 0s for never (etcd leases count seconds)", *f)
	}
	if err := c.validateNodes(); err != nil {
		return err
	}
	return c.validateGroup()
}

// validateNodes checks the planned members: two data nodes and one
// arbitrator with distinct names and IPv4 addresses, this node among
// them as its role and address say.
func (c *Config) validateNodes() error {
	names, addrs := map[string]bool{}, map[string]string{}
	count := map[core.Role]int{}
	for i, n := range c.Nodes {
		field := fmt.Sprintf("nodes[%d]", i)
		switch {
		case !nameRE.MatchString(n.Name):
			return yamlstrict.Errorf(field+".name", "%q: want a lower-case name of letters, digits and dashes", n.Name)
		case names[n.Name]:
			return yamlstrict.Errorf(field+".name", "%q: listed twice", n.Name)
		case n.Role != core.RoleData && n.Role != core.RoleArbitrator:
			return yamlstrict.Errorf(field+".role", "%q: want data or arbitrator", n.Role)
		}
		if a, err := netip.ParseAddr(n.Address); err != nil || !a.Is4() {
			return yamlstrict.Errorf(field+".address", "%q: want an IPv4 address", n.Address)
		}
		if prev, ok := addrs[n.Address]; ok {
			return yamlstrict.Errorf(field+".address", "%s: also the address of %s", n.Address, prev)
		}
		names[n.Name], addrs[n.Address] = true, n.Name
		count[n.Role]++
	}
	if count[core.RoleData] != 2 || count[core.RoleArbitrator] != 1 {
		return yamlstrict.Errorf("nodes", "%d data nodes and %d arbitrators: a cluster has two data nodes and one arbitrator", count[core.RoleData], count[core.RoleArbitrator])
	}
	self, ok := c.planned(c.Node)
	switch {
	case !ok:
		return yamlstrict.Errorf("nodes", "this node %q is not listed", c.Node)
	case self.Role != c.Role || self.Address != c.Address:
		return yamlstrict.Errorf("nodes", "%s is listed as %s at %s, but role and address say %s at %s", c.Node, self.Role, self.Address, c.Role, c.Address)
	}
	return nil
}

func (c *Config) validateGroup() error {
	seen := map[string]bool{}
	for i, r := range c.Group {
		field := fmt.Sprintf("group[%d]", i)
		if !nameRE.MatchString(r.Name) {
			return yamlstrict.Errorf(field+".name", "%q: want a lower-case name", r.Name)
		}
		if seen[r.Name] {
			return yamlstrict.Errorf(field+".name", "%q: used twice", r.Name)
		}
		seen[r.Name] = true
		if r.Agent == "vip" {
			if _, err := netip.ParsePrefix(r.Params["address"]); err != nil {
				return yamlstrict.Errorf(field+".params.address", "%q: want ADDR/LEN", r.Params["address"])
			}
			if r.Params["interface"] == "" {
				return yamlstrict.Errorf(field+".params.interface", "required for a vip")
			}
		} else if slices.Contains(builtins, r.Agent) {
			// Built-in agents check their params when the daemon builds them.
		} else if _, _, err := ocf.Parse(r.Agent); err != nil {
			return yamlstrict.Errorf(field+".agent", "%v (or one of the built-in agents vip, drbd, fs, mail)", err)
		}
		for a, d := range r.Timeouts {
			if d <= 0 {
				return yamlstrict.Errorf(field+".timeouts."+a, "%v: must be positive", d)
			}
		}
		if r.MonitorInterval < 100*time.Millisecond {
			return yamlstrict.Errorf(field+".monitor_interval", "%v: at least 100ms", r.MonitorInterval)
		}
		if r.MonitorFailures < 1 {
			return yamlstrict.Errorf(field+".monitor_failures", "%d: at least 1", r.MonitorFailures)
		}
	}
	return nil
}
