package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
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
	// each into /bin; "tandem/init" becomes /init.
	Commands []string
	// Rescue are u-root core commands by name (see RescueCommands).
	Rescue []string
	// Files are the non-Go files.
	Files *Tree
	// Logf reports progress.
	Logf func(string, ...any)
}

// Build compiles the commands with mkuimage and returns the gzip-compressed
// archive.
func Build(ctx context.Context, o Options) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "tandem-initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	base, err := o.Files.Archive()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	var rescue []string
	for _, c := range o.Rescue {
		rescue = append(rescue, "github.com/u-root/u-root/cmds/core/"+c)
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.WithWorkingDir(o.ModuleDir))
	out := filepath.Join(tmp, "initramfs.cpio")
	logger := &llog.Logger{Sink: llog.SinkFor(func(f string, a ...any) { o.Logf("initramfs: mkuimage: "+f, a...) }), Level: slog.LevelWarn}
	err = uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBaseArchive(base),
		uimage.WithBinaryCommandsOpts(&golang.BuildOpts{EnableInlining: true}, o.Commands...),
		uimage.WithBusyboxCommands(rescue...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(out),
	)
	if err != nil {
		return nil, fmt.Errorf("initramfs: mkuimage: %w", err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return compress(raw)
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
