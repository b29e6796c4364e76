package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodData = `cluster: mail
node: a
role: data
address: 10.0.0.1
watchdog: /dev/watchdog
nodes: [{name: a, role: data, address: 10.0.0.1}, {name: b, role: data, address: 10.0.0.2}, {name: c, role: arbitrator, address: 10.0.0.3}]
group:
  - name: vip
    agent: vip
    params: {address: 10.0.0.100/24, interface: eth0}
  - name: app
    agent: ocf:heartbeat:Dummy
`

// testNodes lists the members of goodData's cluster.
const testNodes = "nodes: [{name: a, role: data, address: 10.0.0.1}, {name: b, role: data, address: 10.0.0.2}, {name: c, role: arbitrator, address: 10.0.0.3}]\n"

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData), "cluster.yaml")
	if err != nil {
		t.Fatalf("LoadConfig = %v", err)
	}
	if c.PeerPort != 2380 || c.ClientPort != 2379 || c.APIPort != 7443 {
		t.Errorf("ports = %d %d %d, want the defaults 2380 2379 7443", c.PeerPort, c.ClientPort, c.APIPort)
	}
	cc := c.CoreConfig()
	if cc.MigrationThreshold != DefaultMigration || cc.Stickiness != DefaultStickiness {
		t.Errorf("policy = %d/%d, want defaults", cc.MigrationThreshold, cc.Stickiness)
	}
	if got := strings.Join(cc.Resources, ","); got != "vip,app" {
		t.Errorf("resources = %s, want vip,app (config order)", got)
	}
	if c.Group[0].MonitorInterval != DefaultMonitorInterval || c.Group[0].MonitorFailures != 1 {
		t.Errorf("monitor_interval, monitor_failures = %v, %d, want the defaults", c.Group[0].MonitorInterval, c.Group[0].MonitorFailures)
	}
	if c.FailureTimeout() != DefaultFailureTimeout {
		t.Errorf("failure timeout = %v, want the default %v", c.FailureTimeout(), DefaultFailureTimeout)
	}
	arb, err := LoadConfig(strings.NewReader("cluster: mail\nnode: c\nrole: arbitrator\naddress: 10.0.0.3\n"+testNodes), "c.yaml")
	if err != nil {
		t.Fatalf("arbitrator config: %v", err)
	}
	if arb.Watchdog != "none" {
		t.Errorf("arbitrator watchdog = %q, want none by default", arb.Watchdog)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", goodData + "colour: blue\n", `node.yaml:13: unknown field "colour" (expected one of: address,`},
		{"typo in group", strings.Replace(goodData, "agent: vip", "agnet: vip", 1), `node.yaml:9: unknown field "agnet" in group[0]`},
		{"bad role", strings.Replace(goodData, "role: data", "role: boss", 1), `node.yaml:3: role: "boss": want data or arbitrator`},
		{"bad address", strings.Replace(goodData, "address: 10.0.0.1", "address: nowhere", 1), `address: "nowhere"`},
		{"bad node name", strings.Replace(goodData, "node: a", "node: A_1", 1), `node: "A_1"`},
		{"renewals exceed ttl", goodData + "timing: {lease_ttl: 3s, renew_interval: 1s, renew_retries: 3}\n", "timing: renew_interval"},
		{"watchdog not below ttl", goodData + "timing: {watchdog_timeout: 5s}\n", "timing: watchdog_timeout"},
		{"fractional ttl", goodData + "timing: {lease_ttl: 3500ms}\n", "timing.lease_ttl"},
		{"poll too slow", goodData + "timing: {poll_interval: 2s}\n", "timing.poll_interval"},
		{"vip without interface", strings.Replace(goodData, ", interface: eth0", "", 1), "group[0].params.interface"},
		{"vip bad address", strings.Replace(goodData, "10.0.0.100/24", "10.0.0.100", 1), "group[0].params.address"},
		{"bad agent", strings.Replace(goodData, "ocf:heartbeat:Dummy", "lsb:postfix", 1), "group[1].agent"},
		{"duplicate name", strings.Replace(goodData, "name: app", "name: vip", 1), `node.yaml:11: group[1].name: "vip": used twice`},
		{"arbitrator with group", strings.Replace(goodData, "role: data", "role: arbitrator", 1), "an arbitrator never runs resources"},
		{"data without watchdog", strings.Replace(goodData, "/dev/watchdog", "none", 1), "a data node needs a watchdog"},
		{"negative threshold", goodData + "policy: {migration_threshold: -1}\n", "policy.migration_threshold"},
		{"bad timeout", goodData + "    timeouts: {start: 0s}\n", "group[1].timeouts.start"},
		{"negative monitor failures", goodData + "    monitor_failures: -1\n", "group[1].monitor_failures: -1"},
		{"negative failure timeout", goodData + "policy: {failure_timeout: -1s}\n", "policy.failure_timeout"},
		{"fractional failure timeout", goodData + "policy: {failure_timeout: 1500ms}\n", "policy.failure_timeout: 1.5s"},
		{"fence self", goodData + "fencing: {a: {agent: ipmi, address: 10.0.0.9, user: u, password_file: /p}}\n", "fencing.a: a node cannot fence itself"},
		{"fence agent", goodData + "fencing: {b: {agent: ssh, address: 10.0.0.9, user: u, password_file: /p}}\n", `fencing.b.agent: "ssh"`},
		{"one data node", strings.Replace(goodData, "name: b, role: data", "name: b, role: arbitrator", 1), "nodes: 1 data nodes and 2 arbitrators"},
		{"self not listed", strings.Replace(goodData, "name: a, role", "name: x, role", 1), `nodes: this node "a" is not listed`},
		{"self elsewhere", strings.Replace(goodData, "name: a, role: data, address: 10.0.0.1", "name: a, role: data, address: 10.0.0.9", 1), "a is listed as data at 10.0.0.9"},
		{"ipv6 member", strings.Replace(goodData, "address: 10.0.0.2", "address: fd00::2", 1), `nodes[1].address: "fd00::2": want an IPv4 address`},
		{"upper-case member", strings.Replace(goodData, "name: b,", "name: B,", 1), `nodes[1].name: "B"`},
		{"same address twice", strings.Replace(goodData, "address: 10.0.0.3", "address: 10.0.0.2", 1), "nodes[2].address: 10.0.0.2: also the address of b"},
		{"short learner timeout", goodData + "learner_timeout: 1s\n", "learner_timeout: 1s: at least 10s"},
		{"fence no password", goodData + "fencing: {b: {agent: ipmi, address: 10.0.0.9, user: u}}\n", "fencing.b: user and password_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(strings.NewReader(tt.yaml), "node.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "node.yaml:") {
				t.Fatalf("LoadConfig = %v, want an error starting with the file and containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("errors.Is(%v, ErrConfig) = false", err)
			}
		})
	}
}

func TestCoreTimingOverrides(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(goodData+"timing: {lease_ttl: 6s, renew_interval: 1s, renew_retries: 2, stop_margin: 2s, watchdog_timeout: 4s, takeover_margin: 0s}\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	got := c.CoreTiming()
	if got.LeaseTTL != 6*time.Second || got.RenewRetries != 2 || got.TakeoverMargin != 0 || got.WatchdogTimeout != 4*time.Second {
		t.Errorf("CoreTiming() = %+v, want the configured values (takeover_margin 0 kept)", got)
	}
}
