package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
	"tandem/lab"
)

func TestRunErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "no command"},
		{[]string{"flash"}, "", `unknown command "flash"`},
		{[]string{"build"}, "", "build: want one recipe file, got 0 arguments"},
		{[]string{"build", "/nonexistent/r.yaml"}, "", "/nonexistent/r.yaml: no such file"},
		{[]string{"build", "../../recipes/kvm-node.yaml"}, "yesterday", `SOURCE_DATE_EPOCH="yesterday": want a non-negative number of seconds`},
		{[]string{"boot", "-firmware", "coreboot", "x"}, "", `boot: -firmware "coreboot": want bios or uefi`},
		{[]string{"boot", t.TempDir()}, "", "manifest.json: no such file or directory (build it first with tandem build)"},
		{[]string{"lab"}, "", "lab: no command"},
		{[]string{"lab", "reset"}, "", `lab: unknown command "reset"`},
		{[]string{"lab", "reboot", "-dir", t.TempDir()}, "", "lab reboot: want one NODE"},
		{[]string{"lab", "start", "-dir", t.TempDir(), "data-a"}, "", "no lab running"},
		{[]string{"lab", "kill", "-dir", t.TempDir()}, "", "lab kill: want one NODE"},
		{[]string{"lab", "partition", "-dir", t.TempDir()}, "", "lab partition: want at least one NODE"},
		{[]string{"lab", "heal", "-dir", t.TempDir()}, "", "no lab running"},
		{[]string{"lab", "status", "-dir", t.TempDir()}, "", "is a lab up in"},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", c.env)
		var out, errw bytes.Buffer
		err := run(context.Background(), c.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(%q) = %v, want error containing %q", c.args, err, c.want)
		}
	}
}

func TestReadSeed(t *testing.T) {
	dir := t.TempDir()
	testenv.MkdirAll(t, filepath.Join(dir, "data-a", "cluster"))
	testenv.WriteFile(t, filepath.Join(dir, "data-a", "node.yaml"), []byte("hostname: a\n"), 0o644)
	testenv.WriteFile(t, filepath.Join(dir, "data-a", "cluster", "ca.pem"), []byte("CA"), 0o644)
	got, err := readSeed(filepath.Join(dir, "data-a"))
	if err != nil || len(got) != 2 || string(got["node.yaml"]) != "hostname: a\n" || string(got["cluster/ca.pem"]) != "CA" {
		t.Errorf("readSeed(data-a) = %q, %v; want node.yaml and cluster/ca.pem", got, err)
	}
	if got, err := readSeed(filepath.Join(dir, "arbiter")); got != nil || err != nil {
		t.Errorf("readSeed(missing dir) = %q, %v; want nothing", got, err)
	}
}

func TestPasswdArgs(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"passwd", "extra"}, &out, io.Discard); err == nil {
		t.Error("passwd with an argument: no error")
	}
}

// printCluster names every secret and command lab up promises
// (docs/lab.md).
func TestPrintCluster(t *testing.T) {
	cs, err := lab.NewClusterSeed(lab.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printCluster(&b, cs, "tandem-lab-1", "out/lab")
	for _, want := range []string{cs.AdminCode, cs.MailUser, cs.MailPassword, cs.ConsolePassword,
		"cluster admin", "mail cert show -ca", "587 (STARTTLS)", "993 (TLS)", "ip netns exec tandem-lab-1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lab up's text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPrintStateCuts(t *testing.T) {
	var b bytes.Buffer
	printState(&b, lab.State{})
	if !strings.Contains(b.String(), "partition: none\n") {
		t.Errorf("no cut: want \"partition: none\", got\n%s", b.String())
	}
	b.Reset()
	printState(&b, lab.State{Partitioned: []string{"data-a"}, BlockedTCP: []uint16{7789}})
	if want := "partition: data-a cut off from the rest; TCP ports [7789] dropped (replication link cut)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("want %q in\n%s", want, b.String())
	}
}
