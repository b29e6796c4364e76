package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cfg = `cluster: lab
node: a
role: data
address: 127.0.0.1
api_port: 1
watchdog: record:/dev/null
nodes:
  - {name: a, role: data, address: 127.0.0.1}
  - {name: b, role: data, address: 127.0.0.2}
  - {name: c, role: arbitrator, address: 127.0.0.3}
`

func ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return out.String(), err
}

func TestBadArguments(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"node", "standby"}, "node standby|online NODE"},
		{[]string{"node", "sleep", "a"}, "node standby|online NODE"},
		{[]string{"resource", "move"}, "resource move NODE"},
		{[]string{"resource", "restart", "x"}, `not "restart"`},
		{[]string{"resource", "cleanup", "app", "extra"}, "resource cleanup [RESOURCE] [-node NODE]"},
		{[]string{"maintenance", "maybe"}, "maintenance on|off"},
		{[]string{"status", "now"}, "status takes no arguments"},
		{[]string{"cluster"}, "cluster create|join|code|admin"},
		{[]string{"cluster", "split"}, `not "split"`},
		{[]string{"cluster", "admin", "-name", "me"}, "cluster admin needs -cluster, -name, -peer and -code"},
		{[]string{"cluster", "monitor", "-name", "me"}, "cluster monitor needs -cluster, -name, -peer and -code"},
		{[]string{"cluster", "code"}, "cluster code takes one name"},
		{[]string{"cluster", "revoke", "a", "b"}, "cluster revoke takes one name"},
		{[]string{"cluster", "remove"}, "cluster remove takes one name"},
		{[]string{"replication"}, "replication status|resolve-split-brain"},
		{[]string{"replication", "heal"}, `not "heal"`},
		{[]string{"replication", "resolve-split-brain"}, "resolve-split-brain -keep NODE"},
		{[]string{"replication", "status", "extra"}, "bad arguments to replication status"},
		{[]string{"mail"}, "mail cert|user|alias|domain|dkim|config"},
		{[]string{"mail", "dkim", "show"}, "mail dkim show [-json] DOMAIN"},
		{[]string{"mail", "dkim", "show", "a.test", "b.test"}, "mail dkim show [-json] DOMAIN"},
		{[]string{"mail", "dkim", "rotate", "a.test"}, "mail dkim show [-json] DOMAIN"},
		{[]string{"mail", "dkim", "show", "-pem", "a.test"}, "flag provided but not defined: -pem"},
		{[]string{"mail", "config", "set", "pop3"}, "mail config get [NAME] | set NAME VALUE | set smarthost_password"},
		{[]string{"mail", "config", "unset", "pop3"}, "mail config get [NAME] | set NAME VALUE | set smarthost_password"}, {[]string{"mail", "config", "set", "smarthost_password", "hunter2"}, "never given on the command line"},
		{[]string{"fence"}, "fence test [-json] NODE"}, {[]string{"fence", "test"}, "fence test [-json] NODE"}, {[]string{"fence", "off", "a"}, "fence test [-json] NODE"},
		{[]string{"mail", "cert"}, "mail cert|user|alias|domain"},
		{[]string{"mail", "box", "x"}, "mail cert|user|alias|domain"},
		{[]string{"mail", "user", "add"}, "mail user add|passwd ADDR"},
		{[]string{"mail", "user", "rename", "a@b.test"}, "mail user add|passwd ADDR"},
		{[]string{"mail", "user", "add", "a@b.test", "extra"}, "mail user add|passwd ADDR"},
		{[]string{"mail", "user", "quota", "a@b.test"}, "mail user quota ADDR MIB"},
		{[]string{"mail", "user", "quota", "a@b.test", "lots"}, `"lots" is not a number of MiB`},
		{[]string{"mail", "user", "del", "a@b.test", "c@b.test"}, "mail user del ADDR"},
		{[]string{"mail", "user", "import"}, "mail user add|passwd ADDR"},
		{[]string{"mail", "user", "list", "x"}, "list takes no arguments"},
		{[]string{"mail", "alias", "add", "a@b.test"}, "mail alias add FROM TO..."},
		{[]string{"mail", "alias", "move", "a@b.test"}, "mail alias add|del|list"},
		{[]string{"mail", "domain", "add"}, "mail domain add|del DOMAIN"},
		{[]string{"mail", "domain", "rename", "x"}, "mail domain add|del|list"},
		{[]string{"mail", "cert", "renew"}, "mail cert show|install|issue"},
		{[]string{"mail", "cert", "show", "x"}, "mail cert show takes no arguments"},
		{[]string{"mail", "cert", "install", "cert.pem"}, "mail cert install CERT KEY"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			_, err := ctl(t, append([]string{"-state", t.TempDir()}, tt.args...)...)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want a usage error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestCreateThenUnreachable(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	out, err := ctl(t, "-state", state, "cluster", "create", "-config", conf)
	if err != nil || !strings.Contains(out, "pairing codes") || !strings.Contains(out, "  admin: ") || !strings.Contains(out, "  b: ") || !strings.Contains(out, "  c: ") {
		t.Fatalf("cluster create = %v, %q; want pairing codes for admin, b and c", err, out)
	}
	if _, err := ctl(t, "-state", state, "cluster", "create", "-config", conf); err == nil || !strings.Contains(err.Error(), "already part of a cluster") {
		t.Errorf("second create = %v, want already part of a cluster", err)
	}
	// Nothing listens on port 1.
	_, err = ctl(t, "-state", state, "-endpoint", "https://127.0.0.1:1", "status")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the cluster API at https://127.0.0.1:1") {
		t.Errorf("status against nothing = %v, want a clear unreachable error", err)
	}
	_, err = ctl(t, "-state", filepath.Join(dir, "nostate"), "status")
	if err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("status without a state dir = %v, want an error naming the missing certificate", err)
	}
	_, err = ctl(t, "-state", filepath.Join(dir, "joiner"), "cluster", "join", "-config", conf, "-peer", "https://127.0.0.1:1", "-code", "nonsense")
	if err == nil || !strings.Contains(err.Error(), "pairing code") {
		t.Errorf("join with a malformed code = %v, want a pairing code error", err)
	}
	_, err = ctl(t, "-state", filepath.Join(dir, "joiner"), "cluster", "join", "-config", conf)
	if !errors.Is(err, errUsage) {
		t.Errorf("join without -peer/-code = %v, want a usage error", err)
	}
}

func TestIsSerial(t *testing.T) {
	for s, want := range map[string]bool{
		"data-b": false, "admin": false, "deadbeef": false,
		"3408ceb7a8347123456e4e83eae0f8f2": true, "34:08:CE:B7:A8:34:71:23:45:6E:4E:83:EA:E0:F8:F2": true,
	} {
		if isSerial(s) != want {
			t.Errorf("isSerial(%q) = %v, want %v", s, !want, want)
		}
	}
}

func TestMissingConfig(t *testing.T) {
	_, err := ctl(t, "-state", t.TempDir(), "cluster", "create", "-config", "/nonexistent/cluster.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cluster.yaml") {
		t.Errorf("create with a missing config = %v, want an error naming the file", err)
	}
}
