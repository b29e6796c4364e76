// Command tandem builds tandem node images and boots them.
//
//	tandem build [-o DIR] [-cache DIR] [-refresh] RECIPE.yaml
//	tandem boot [-firmware bios|uefi] [-pxe] [-mem MiB] DIR
//	tandem bench [-runs N] [-o DIR] RECIPE.yaml
//	tandem lab up|status|kill NODE|partition NODE...|heal|down [-dir DIR]
//	tandem passwd < PASSWORD
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tandem:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: tandem COMMAND [flags] ARGS

commands:
  build RECIPE.yaml   build the artifacts a recipe asks for (raw, qcow2, PXE) and manifest.json
  boot DIR            boot a built image under QEMU with the serial console on this terminal
  bench RECIPE.yaml   measure build time, sizes and boot-to-ready time
  lab COMMAND         the three-VM lab: up, status, kill NODE, partition NODE..., heal, down
  passwd              print the hash of a console password (console.password of a node config)

run "tandem COMMAND -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errors.New("no command")
		}
		return nil
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"build":  runBuild,
		"boot":   runBoot,
		"bench":  runBench,
		"lab":    runLab,
		"passwd": runPasswd,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd(ctx, args[1:], stdout, stderr)
}
