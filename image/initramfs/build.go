package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"tandem/image/overlay"
)

// RescueCommands are u-root's core commands built into every node (as one
// busybox-style binary under /bbin) for a rescue shell.
var RescueCommands = []string{
	"gosh", "ls", "cat", "cp", "mv", "rm", "ln", "mkdir", "chmod", "mount",
	"umount", "dmesg", "ps", "pidof", "kill", "ip", "ping", "df", "free",
	"uname", "hostname", "date", "sleep", "echo", "grep", "find", "more",
	"tail", "dd", "sync", "lsmod", "hexdump", "wget", "uptime", "pwd", "gpt",
}

// Options say what goes into the archive.
type Options struct {
	// ModuleDir is the tandem source tree (the directory of go.mod); Go
	// packages are resolved and built there.
	ModuleDir string
	// Commands are tandem's Go commands (package paths), built one binary
	// each into /bin; /init links to /bin/init.
	Commands []string
	// Rescue are u-root core commands by name (see RescueCommands).
	Rescue []string
	// Files are the non-Go files.
	Files *Tree
	// Overlay is laid over everything else, last (Tree.Lay): the
	// recipe's overlays' rootfs/ trees, merged (overlay.Merge).
	Overlay []overlay.File
	// CacheDir keeps the rescue commands' busybox between builds: it only
	// changes with the Go version, go.sum and the command list.
	CacheDir string
	// Logf reports progress.
	Logf func(string, ...any)
}

// Build compiles the commands and returns the gzip-compressed archive.
//
// tandem's own commands are built with a plain cached `go build`, not with
// mkuimage's binary builder: that one passes -a, which rebuilds every
// dependency (etcd included) on every build and made a warm build take
// minutes instead of seconds. The flags are the ones mkuimage uses for
// reproducible binaries.
func Build(ctx context.Context, o Options) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "tandem-initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.WithWorkingDir(o.ModuleDir))
	logger := &llog.Logger{Sink: llog.SinkFor(func(f string, a ...any) { o.Logf("initramfs: mkuimage: "+f, a...) }), Level: slog.LevelWarn}
	rescue, err := o.rescueArchive(ctx, env, logger)
	if err != nil {
		return nil, err
	}
	if err := o.Files.addArchive(rescue); err != nil {
		return nil, fmt.Errorf("initramfs: rescue commands: %w", err)
	}
	if err := o.buildCommands(ctx, tmp); err != nil {
		return nil, err
	}
	o.Files.add(cpio.Symlink("init", "bin/init"))
	o.Files.add(cpio.Symlink("bin/sh", "../bbin/gosh"))
	if err := o.Files.Lay(o.Overlay); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	var raw bytes.Buffer
	if err := o.Files.WriteCPIO(&raw); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return compress(raw.Bytes())
}

// buildCommands builds tandem's Go commands into /bin.
func (o *Options) buildCommands(ctx context.Context, tmp string) error {
	bin := filepath.Join(tmp, "bin") + "/"
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", bin}, o.Commands...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initramfs: go build %s: %w\n%s", strings.Join(o.Commands, " "), err, out)
	}
	for _, c := range o.Commands {
		name := path.Base(c)
		if err := o.Files.AddHost("bin/"+name, filepath.Join(bin, name)); err != nil {
			return err
		}
	}
	return nil
}

// rescueArchive returns the path of a cpio archive holding u-root's rescue
// commands as one busybox binary (/bbin/bb and its links), built with
// mkuimage's busybox mode on first use and cached after: it is the slow
// part of an initramfs and rarely changes.
func (o *Options) rescueArchive(ctx context.Context, env *golang.Environ, logger *llog.Logger) (string, error) {
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	sum, err := os.ReadFile(filepath.Join(o.ModuleDir, "go.sum"))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", goVersion, sum, strings.Join(o.Rescue, " "))
	path := filepath.Join(o.CacheDir, "rescue", hex.EncodeToString(h.Sum(nil))[:24]+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	o.Logf("initramfs: building the rescue commands (cached for later builds)")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	var pkgs []string
	for _, c := range o.Rescue {
		pkgs = append(pkgs, "github.com/u-root/u-root/cmds/core/"+c)
	}
	out := filepath.Join(tmp, "rescue.cpio")
	err = uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBusyboxCommands(pkgs...),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(out),
	)
	if err != nil {
		return "", fmt.Errorf("initramfs: mkuimage (rescue commands): %w", err)
	}
	return path, os.Rename(out, path)
}

// compress gzips without a name or time in the header, so equal archives
// give equal bytes.
func compress(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
