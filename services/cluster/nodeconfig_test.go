package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/nodeconfig"
	"tandem/internal/testenv"
	"tandem/services/cluster/core"
	"tandem/services/cluster/fence"
)

const labNode = `hostname: %s
cluster:
  name: lab
  domain: lab.tandem.test
  vip: 10.77.0.100
  nodes:
    - {name: data-a, address: 10.77.0.11}
    - {name: data-b, address: 10.77.0.12}
    - {name: arbiter, address: 10.77.0.13, role: arbitrator}
network:
  links:
    - {name: eth0, addresses: [10.77.0.%s/24]}
`

func loadNode(t *testing.T, host, last string) *nodeconfig.Config {
	t.Helper()
	nc, err := nodeconfig.Load(strings.NewReader(fmt.Sprintf(labNode, host, last)), "node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

func TestFromNodeConfigData(t *testing.T) {
	cfg, err := FromNodeConfig(loadNode(t, "data-b", "12"), "/dev/vda4")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node != "data-b" || cfg.Role != "data" || cfg.Address != "10.77.0.12" || cfg.Watchdog != DefaultWatchdog {
		t.Errorf("node = %s %s %s %s", cfg.Node, cfg.Role, cfg.Address, cfg.Watchdog)
	}
	if cfg.TimeStatus != "" || cfg.CoreConfig().ClockGuard {
		t.Errorf("no time servers, but the clock guard is on (%q)", cfg.TimeStatus)
	}
	nc := loadNode(t, "data-b", "12")
	nc.Time.Servers = []string{"10.77.0.1"}
	if c, err := FromNodeConfig(nc, "/dev/vda4"); err != nil || c.TimeStatus != "/run/tandem/time/time.json" || !c.CoreConfig().ClockGuard {
		t.Errorf("with time servers: time status %q, %v; want the guard on tandem-time's status", c.TimeStatus, err)
	}
	var got []string
	for _, r := range cfg.Group {
		got = append(got, r.Name+":"+r.Agent)
	}
	if strings.Join(got, " ") != "drbd:drbd fs:fs mail:mail vip:vip" {
		t.Errorf("group = %v", got)
	}
	p := cfg.Group[0].Params
	if p["nodes"] != "data-a=10.77.0.11:7789,data-b=10.77.0.12:7789" || p["disk"] != "/dev/vda4" {
		t.Errorf("drbd params = %v", p)
	}
	if v := cfg.Group[3].Params; v["address"] != "10.77.0.100/24" || v["interface"] != "eth0" {
		t.Errorf("vip params = %v", v)
	}
	if m := cfg.Group[2].Params; m["domain"] != "lab.tandem.test" || m["service"] != "mail" || m["listen"] != "10.77.0.100" {
		t.Errorf("mail params = %v", m)
	}
	if m := cfg.Group[2]; m.MonitorInterval != 5*time.Second || m.MonitorFailures != 3 {
		t.Errorf("mail monitor every %v, %d failures in a row, want 5s and 3", m.MonitorInterval, m.MonitorFailures)
	}
	if d := cfg.Group[0]; d.MonitorFailures != 1 {
		t.Errorf("drbd monitor_failures = %d, want the default 1", d.MonitorFailures)
	}
}

func TestFromNodeConfigArbitrator(t *testing.T) {
	cfg, err := FromNodeConfig(loadNode(t, "arbiter", "13"), "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Role != "arbitrator" || len(cfg.Group) != 0 || cfg.Watchdog != "none" {
		t.Errorf("arbitrator config = %+v", cfg)
	}
}

func TestFromNodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, host, last, dev, want string
	}{
		{"not listed", "data-a", "11", "/dev/vda4", `hostname "data-c" is not listed`},
		{"no data partition", "data-a", "11", "", "TANDEM_DATA_DEVICE"},
		{"vip in no subnet", "data-a", "11/32", "/dev/vda4", "cluster.vip: 10.77.0.100 is in no subnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := loadNode(t, tc.host, strings.TrimSuffix(tc.last, "/32"))
			if tc.name == "not listed" {
				nc.Hostname = "data-c" // nodeconfig.Load refuses it; FromNodeConfig too
			}
			if strings.HasSuffix(tc.last, "/32") {
				nc.Network.Links[0].Addresses = []string{"10.77.0.11/32"}
			}
			_, err := FromNodeConfig(nc, tc.dev)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromNodeConfig = %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

func TestScaledTiming(t *testing.T) {
	nc := loadNode(t, "data-a", "11")
	nc.Cluster.LeaseTTL = 8 * time.Second
	cfg, err := FromNodeConfig(nc, "/dev/vda4")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.CoreTiming()
	want := core.Timing{LeaseTTL: 8 * time.Second, RenewInterval: time.Second, RenewRetries: 3,
		StopMargin: 8 * time.Second / 3, WatchdogTimeout: 4 * time.Second, TakeoverMargin: 8 * time.Second / 6}
	if got != want {
		t.Errorf("timing = %+v, want %+v", got, want)
	}
	if cfg.Timing.PollInterval != time.Second {
		t.Errorf("poll interval = %v, want ttl/8", cfg.Timing.PollInterval)
	}
	if r, g, q, s := cfg.pollTimeout(), cfg.quorumGrace(), cfg.requestTimeout(), stepEvery(8*time.Second); r != 2*time.Second || g != 4*time.Second || q != 4*time.Second || s != 250*time.Millisecond {
		t.Errorf("read timeout, quorum grace, request timeout, step = %v, %v, %v, %v; want 2s, 4s, 4s, 250ms", r, g, q, s)
	}
	for _, c := range []struct {
		timing             core.Timing
		tickMs, electionMs uint
	}{{core.DefaultTiming(), 53, 530}, {got, 144, 1440}} {
		tk, el := raftTiming(c.timing)
		if tk != c.tickMs || el != c.electionMs {
			t.Errorf("raftTiming(lease %v) = %d, %d ms, want %d, %d", c.timing.LeaseTTL, tk, el, c.tickMs, c.electionMs)
		}
		// An election after the leader's death (two election timeouts at
		// most, and round trips) fits before the owner must stop, with a
		// third of the budget to spare; etcd keeps leases of at least 1.5
		// election timeouts, under half the lease.
		election := time.Duration(el) * time.Millisecond
		if budget := c.timing.LeaseTTL - c.timing.StopMargin - c.timing.RenewInterval; 3*election > budget {
			t.Errorf("lease %v: election timeout %v leaves no third of the renewal budget %v", c.timing.LeaseTTL, election, budget)
		}
		if 3*election/2 > c.timing.LeaseTTL/2 {
			t.Errorf("lease %v: etcd's minimum lease TTL %v is over half the lease", c.timing.LeaseTTL, 3*election/2)
		}
	}
}

// Each data node fences its peer with the device the node config gives
// the peer; the password comes from a file of its owner's only.
func TestFromNodeConfigFencing(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "fence-data-a.pass")
	testenv.WriteFile(t, pw, []byte("bmc secret\nignored\n"), 0o600)
	nc := loadNode(t, "data-b", "12")
	nc.Cluster.Nodes[0].Fence = &nodeconfig.Fence{Agent: "ipmi", Address: "10.77.0.21", User: "fence", PasswordFile: pw}
	nc.Cluster.Nodes[1].Fence = &nodeconfig.Fence{Agent: "ipmi", Address: "10.77.0.22", User: "fence", PasswordFile: "/nonexistent"}
	cfg, err := FromNodeConfig(nc, "/dev/vda4")
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := cfg.Fencing["data-a"]; len(cfg.Fencing) != 1 || !ok || f.Address != "10.77.0.21" || f.Field != "cluster.nodes[0].fence" || !cfg.CoreConfig().Fencing {
		t.Fatalf("fencing = %+v; want data-a's device only", cfg.Fencing)
	}
	a, err := fencers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The alive key: half the lease with fencing, a second less without.
	for _, c := range []struct {
		fencing bool
		ttl     time.Duration
		want    time.Duration
	}{{true, 8 * time.Second, 4 * time.Second}, {false, 8 * time.Second, 7 * time.Second}, {true, 3 * time.Second, 2 * time.Second}, {false, 3 * time.Second, 2 * time.Second}} {
		c2 := *cfg
		c2.Timing = scaledTiming(c.ttl)
		if !c.fencing {
			c2.Fencing = nil
		}
		if got := aliveTTL(&c2); got != c.want {
			t.Errorf("alive TTL with fencing %v, lease %v = %v, want %v", c.fencing, c.ttl, got, c.want)
		}
	}
	if i, ok := a["data-a"].(*fence.IPMI); !ok || i.Password != "bmc secret" || i.Host != "10.77.0.21" {
		t.Errorf("agent = %+v", a["data-a"])
	}
	if arb, err := FromNodeConfig(func() *nodeconfig.Config {
		n := loadNode(t, "arbiter", "13")
		n.Cluster.Nodes = nc.Cluster.Nodes
		return n
	}(), ""); err != nil || len(arb.Fencing) != 0 {
		t.Errorf("the arbitrator's fencing = %v, %v; want none", arb.Fencing, err)
	}
	for _, c := range []struct {
		mode os.FileMode
		data string
		want string
	}{
		{0o640, "secret\n", "cluster.nodes[0].fence.password_file: " + pw + ": mode 0640: a password file must be 0600 or stricter"},
		{0o600, "\nsecret\n", "its first line is empty"},
		{0o000, "", "cluster.nodes[0].fence.password_file: open " + pw},
	} {
		os.Remove(pw)
		testenv.WriteFile(t, pw, []byte(c.data), c.mode)
		if c.data == "" {
			os.Remove(pw)
		}
		if _, err := fencers(cfg); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("fencers with %v %q = %v, want %q", c.mode, c.data, err, c.want)
		}
	}
}
