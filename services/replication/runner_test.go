package replication

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCmd records the commands run and answers from a script keyed by the
// command line.
type fakeCmd struct {
	calls   []string
	outputs map[string]string
	fail    map[string]bool
	// onRun, if set, runs after a command is recorded (to flip module
	// state on modprobe, ...).
	onRun func(line string)
}

func (f *fakeCmd) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.calls = append(f.calls, line)
	if f.onRun != nil {
		f.onRun(line)
	}
	out := []byte(f.outputs[line])
	if f.fail[line] {
		return out, errors.New("exit status 11")
	}
	return out, nil
}

func testResource(cmd *fakeCmd, loaded *bool, md Metadata) *Resource {
	return &Resource{
		Config:       testConfig(),
		ConfigPath:   "/etc/drbd.d/data.res",
		Self:         "tandem-a",
		Cmd:          cmd,
		ModuleLoaded: func() bool { return *loaded },
		Metadata:     func(string) (Metadata, error) { return md, nil },
	}
}

func TestEnsureMetadata(t *testing.T) {
	for _, tc := range []struct {
		name        string
		loaded      bool
		md          Metadata
		wantCreated bool
		wantErr     error
		wantCalls   []string
	}{
		{"new disk, module not loaded", false, NoMetadata, true, nil,
			[]string{"modprobe drbd", "drbdadm -c /etc/drbd.d/data.res --force create-md data"}},
		{"new disk, module loaded", true, NoMetadata, true, nil,
			[]string{"drbdadm -c /etc/drbd.d/data.res --force create-md data"}},
		{"existing 8.4 metadata", true, Metadata84, false, nil, nil},
		{"v09 metadata", true, Metadata09, false, ErrMetadata09, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loaded := tc.loaded
			cmd := &fakeCmd{onRun: func(l string) {
				if l == "modprobe drbd" {
					loaded = true
				}
			}}
			r := testResource(cmd, &loaded, tc.md)
			created, err := r.EnsureMetadata(context.Background())
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("EnsureMetadata() error = %v, want %v", err, tc.wantErr)
			}
			if created != tc.wantCreated {
				t.Errorf("EnsureMetadata() = %v, want %v", created, tc.wantCreated)
			}
			if strings.Join(cmd.calls, "\n") != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("EnsureMetadata ran %q, want %q", cmd.calls, tc.wantCalls)
			}
		})
	}
}

func TestEnsureModuleFails(t *testing.T) {
	loaded := false
	cmd := &fakeCmd{} // modprobe "succeeds" but nothing loads
	r := testResource(cmd, &loaded, NoMetadata)
	if err := r.Up(context.Background()); err == nil {
		t.Fatalf("Up() with no module = nil, want an error")
	}
	if strings.Join(cmd.calls, ",") != "modprobe drbd" {
		t.Errorf("Up ran %q, want only modprobe drbd (no drbdadm before the module is there)", cmd.calls)
	}
}

func TestLifecycleCommands(t *testing.T) {
	loaded := true
	cmd := &fakeCmd{fail: map[string]bool{"drbdadm -c /etc/drbd.d/data.res primary data": true}}
	r := testResource(cmd, &loaded, Metadata84)
	ctx := context.Background()
	if err := r.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Primary(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Secondary(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Primary(ctx, false); err == nil || !strings.Contains(err.Error(), "promote data") {
		t.Errorf("Primary(false) = %v, want a promote data error", err)
	}
	if err := r.ResumeIO(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Down(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"drbdadm -c /etc/drbd.d/data.res up data",
		"drbdadm -c /etc/drbd.d/data.res primary --force data",
		"drbdadm -c /etc/drbd.d/data.res secondary data",
		"drbdadm -c /etc/drbd.d/data.res primary data",
		"drbdadm -c /etc/drbd.d/data.res resume-io data",
		"drbdadm -c /etc/drbd.d/data.res down data",
	}
	if strings.Join(cmd.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(cmd.calls, "\n"), strings.Join(want, "\n"))
	}
}

func TestWriteConfig(t *testing.T) {
	loaded := true
	r := testResource(&fakeCmd{}, &loaded, NoMetadata)
	r.ConfigPath = filepath.Join(t.TempDir(), "drbd.d", "data.res")
	if err := r.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(r.ConfigPath)
	want, _ := os.ReadFile("testdata/ipv4.res")
	if !bytes.Equal(got, want) {
		t.Errorf("WriteConfig wrote\n%s\nwant testdata/ipv4.res", got)
	}
	r.Self = "arbiter"
	if err := r.WriteConfig(); !errors.Is(err, ErrConfig) {
		t.Errorf("WriteConfig() on a non-data node = %v, want ErrConfig", err)
	}
}

func TestReadMetadata(t *testing.T) {
	const size = 1<<20 + 1000 // not 4 KiB aligned: the superblock is at 1 MiB - 4 KiB
	for _, tc := range []struct {
		magic []byte
		want  Metadata
	}{
		{nil, NoMetadata},
		{[]byte{0x83, 0x74, 0x02, 0x6b}, Metadata84},
		{[]byte{0x83, 0x74, 0x02, 0x6c}, Metadata84},
		{[]byte{0x83, 0x74, 0x02, 0x6d}, Metadata09},
	} {
		img := make([]byte, size)
		copy(img[1<<20-4096+60:], tc.magic)
		got, err := ReadMetadata(bytes.NewReader(img), size)
		if err != nil || got != tc.want {
			t.Errorf("ReadMetadata(magic %x) = %v, %v, want %v", tc.magic, got, err, tc.want)
		}
	}
	if _, err := ReadMetadata(bytes.NewReader(make([]byte, 4096)), 4096); err == nil {
		t.Errorf("ReadMetadata(4 KiB device) = nil error, want too small")
	}
}

func TestStart(t *testing.T) {
	loaded := false
	cmd := &fakeCmd{onRun: func(l string) { loaded = loaded || l == "modprobe drbd" }}
	r := testResource(cmd, &loaded, NoMetadata)
	r.ConfigPath = filepath.Join(t.TempDir(), "data.res")
	r.Root = t.TempDir()
	created, err := r.Start(context.Background())
	if err != nil || !created {
		t.Fatalf("Start() = %v, %v, want true, nil", created, err)
	}
	want := []string{"modprobe drbd", "drbdadm -c " + r.ConfigPath + " --force create-md data", "drbdadm -c " + r.ConfigPath + " up data"}
	if strings.Join(cmd.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("Start ran %q, want %q", cmd.calls, want)
	}
	if _, err := os.Stat(r.ConfigPath); err != nil {
		t.Errorf("Start wrote no config: %v", err)
	}
	for _, d := range append(runtimeDirs, "var/run/drbd") {
		if fi, err := os.Stat(filepath.Join(r.Root, d)); err != nil || !fi.IsDir() {
			t.Errorf("Start made no %s: %v", d, err)
		}
	}
}
