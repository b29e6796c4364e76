package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"tandem/internal/nodeconfig"
	"tandem/services/cluster/core"
	"tandem/services/ntp"
)

// The mail group a node derives from its node config: the replicated
// volume, its filesystem, the workload on it and the VIP, in start order.
// Everything the group needs lives under MailRoot on the volume.
const (
	DRBDResource = "mail"
	DRBDPort     = 7789
	DRBDDevice   = "/dev/drbd0"
	MailRoot     = "/srv/mail"
	// MailUsers is the users file on perm the mail workload reads.
	MailUsers = "/perm/tandem/mail-users"
)

// ErrNoCluster says the node config names no cluster (no cluster.name or
// cluster.nodes): a node that is not meant to cluster.
var ErrNoCluster = errors.New("no cluster configured (cluster.name and cluster.nodes)")

// FromNodeConfig derives a node's cluster config from its node config
// (docs/node-config.md): name, role and address from cluster.nodes, the
// VIP's interface and prefix from the static address of this node that
// shares the VIP's subnet, and the standard mail group on data nodes.
// dataDevice is the data partition (PID 1 passes it as
// $TANDEM_DATA_DEVICE); it is needed on data nodes only. Errors name the
// node config's field.
func FromNodeConfig(nc *nodeconfig.Config, dataDevice string) (*Config, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: node config: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	c := nc.Cluster
	if c.Name == "" || len(c.Nodes) == 0 {
		return nil, fmt.Errorf("node config: cluster: %w", ErrNoCluster)
	}
	cfg := &Config{Cluster: c.Name, Node: nc.Hostname, Timing: scaledTiming(c.LeaseTTL)}
	var data []nodeconfig.Node
	fences := map[string]FenceConfig{}
	for i, n := range c.Nodes {
		role := core.RoleData
		if n.Role == string(core.RoleArbitrator) {
			role = core.RoleArbitrator
		} else {
			data = append(data, n)
		}
		if f := n.Fence; f != nil && n.Name != nc.Hostname {
			fences[n.Name] = FenceConfig{Fence: *f, Field: fmt.Sprintf("cluster.nodes[%d].fence", i)}
		}
		if n.Name == nc.Hostname {
			cfg.Role, cfg.Address = role, n.Address
		}
		cfg.Nodes = append(cfg.Nodes, NodeSpec{Name: n.Name, Role: role, Address: n.Address})
	}
	if cfg.Address == "" {
		return nil, bad("cluster.nodes", "hostname %q is not listed", nc.Hostname)
	}
	if cfg.Role == core.RoleArbitrator {
		cfg.Watchdog = "none"
		return finish(cfg)
	}
	// The peer's device: this node fences the peer it lost.
	if len(fences) > 0 {
		cfg.Fencing = fences
	}
	// With time servers, tandem-time says whether the clock is
	// synchronised, and the node takes the group only when it is.
	if len(nc.Time.Servers) > 0 {
		cfg.TimeStatus = ntp.DefaultStatusPath
	}
	if len(data) != 2 {
		return nil, bad("cluster.nodes", "want two data nodes, have %d", len(data))
	}
	if dataDevice == "" {
		return nil, bad("cluster", "data node without a data partition ($TANDEM_DATA_DEVICE is empty)")
	}
	vip, iface, err := vipOn(nc)
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, n := range data {
		peers = append(peers, fmt.Sprintf("%s=%s", n.Name, netip.AddrPortFrom(n.Addr(), DRBDPort)))
	}
	service := c.Service
	if service == "" {
		service = "mail"
	}
	cfg.Group = []ResourceConfig{
		{Name: "drbd", Agent: "drbd", Params: map[string]string{"resource": DRBDResource, "device": DRBDDevice, "disk": dataDevice, "nodes": strings.Join(peers, ",")}},
		{Name: "fs", Agent: "fs", Params: map[string]string{"device": DRBDDevice, "directory": MailRoot}},
		// The mail monitor logs in over IMAP (a login process and an
		// imap process each time): every 5 s, and three failures in a
		// row before one counts, so a loaded node is not restarted for
		// a slow answer.
		{Name: "mail", Agent: "mail", Params: map[string]string{"root": MailRoot, "domain": c.Domain, "service": service, "users": MailUsers, "listen": vip.Addr().String()},
			MonitorInterval: 5 * time.Second, MonitorFailures: 3},
		{Name: "vip", Agent: "vip", Params: map[string]string{"address": vip.String(), "interface": iface}},
	}
	return finish(cfg)
}

// scaledTiming gives the timings for a lease of ttl, for nodes that stall
// (the reason to set lease_ttl), keeping every rule of
// core.Timing.Validate: renewals and the stop margin take 5/6 of the
// lease. The watchdog gets half of it: the daemon may pet only after a
// renewal whose round trip left ttl - watchdog_timeout, and the default
// 5/6 left a loaded node (round trips over a second) unable to pet, so it
// was reset while it still held its lease.
func scaledTiming(ttl time.Duration) TimingConfig {
	if ttl == 0 {
		return TimingConfig{}
	}
	retries := 3
	takeover := ttl / 6
	// Polls every ttl/8 (1s at 8s): each is a linearizable read, a
	// heartbeat round through the etcd leader, and three TCG guests on
	// two cores with a busy neighbour could not pay for two a second on
	// every member (reads then took over a second, docs/cluster.md).
	return TimingConfig{LeaseTTL: ttl, RenewInterval: ttl / 8, RenewRetries: &retries,
		StopMargin: ttl / 3, WatchdogTimeout: ttl / 2, TakeoverMargin: &takeover, PollInterval: ttl / 8}
}

func finish(cfg *Config) (*Config, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	return cfg, nil
}

// vipOn finds the interface with a static IPv4 address in the VIP's subnet
// and returns the VIP with that prefix length.
func vipOn(nc *nodeconfig.Config) (netip.Prefix, string, error) {
	v := nc.Cluster.VIPAddr()
	if !v.IsValid() {
		return netip.Prefix{}, "", fmt.Errorf("%w: node config: cluster.vip: a data node needs the VIP", ErrConfig)
	}
	for _, i := range nc.Interfaces() {
		for _, p := range i.Prefixes() {
			if p.Addr().Is4() && p.Masked().Contains(v) {
				return netip.PrefixFrom(v, p.Bits()), i.Name, nil
			}
		}
	}
	return netip.Prefix{}, "", fmt.Errorf("%w: node config: cluster.vip: %s is in no subnet of this node's static addresses (network.*.addresses)", ErrConfig, v)
}
