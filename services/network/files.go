package network

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"tandem/internal/atomicfile"
	"tandem/internal/nodeconfig"
)

func (s *Service) applyHostname(cfg *nodeconfig.Config) ([]Change, error) {
	cur, err := s.host.Hostname()
	if err != nil {
		return nil, fmt.Errorf("read hostname: %w", err)
	}
	if cur == cfg.Hostname {
		return nil, nil
	}
	if err := s.host.SetHostname(cfg.Hostname); err != nil {
		return nil, fmt.Errorf("set hostname %s: %w", cfg.Hostname, err)
	}
	return []Change{changef("hostname %s -> %s", cur, cfg.Hostname)}, nil
}

// writeFiles writes /etc/hostname, /etc/hosts and resolv.conf from the
// config and the current DHCP leases.
func (s *Service) writeFiles() ([]Change, error) {
	s.mu.Lock()
	cfg := s.cfg
	var dhcpNS []string
	var names []string
	for n := range s.leases {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		dhcpNS = append(dhcpNS, s.leases[n].DNS...)
	}
	s.mu.Unlock()
	if cfg == nil {
		return nil, nil
	}
	var changes []Change
	for _, f := range []struct {
		path string
		data []byte
	}{
		{s.paths.Hostname, []byte(cfg.Hostname + "\n")},
		{s.paths.Hosts, hostsFile(cfg)},
		{s.paths.Resolv, resolvConf(cfg, dhcpNS)},
	} {
		changed, err := writeIfChanged(f.path, f.data)
		if err != nil {
			return changes, err
		}
		if changed {
			changes = append(changes, changef("wrote %s", f.path))
		}
	}
	return changes, nil
}

const header = "# Written by tandem-network from the node config; changes are overwritten.\n"

func hostsFile(cfg *nodeconfig.Config) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	self := false
	for _, n := range cfg.Cluster.Nodes {
		fmt.Fprintf(&b, "%s\t%s\n", n.Address, names(n.Name, cfg.Cluster.Domain))
		self = self || n.Name == cfg.Hostname
	}
	if !self {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", names(cfg.Hostname, cfg.Cluster.Domain))
	}
	return b.Bytes()
}

func names(host, domain string) string {
	if domain == "" {
		return host
	}
	return host + "." + strings.TrimSuffix(domain, ".") + " " + host
}

func resolvConf(cfg *nodeconfig.Config, dhcpNS []string) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	if len(cfg.Network.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(cfg.Network.Search, " "))
	}
	seen := map[string]bool{}
	for _, ns := range append(slices.Clone(cfg.Network.Nameservers), dhcpNS...) {
		if !seen[ns] {
			fmt.Fprintf(&b, "nameserver %s\n", ns)
			seen[ns] = true
		}
	}
	return b.Bytes()
}

// writeIfChanged writes data to path atomically (temp file, fsync,
// rename) unless the file already holds it.
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	return true, atomicfile.Write(path, data, 0o644)
}
