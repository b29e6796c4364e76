package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"tandem/image"
	"tandem/image/recipe"
	"tandem/internal/service"
)

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("build", "usage: tandem build [-o DIR] [-cache DIR] [-refresh] RECIPE.yaml\n\nBuilds the artifacts the recipe lists, without root. SOURCE_DATE_EPOCH (default 0) is stamped on every file.\n", stderr)
	out := fs.String("o", "", "output directory (default out/RECIPE-NAME)")
	cache := fs.String("cache", image.DefaultCacheDir(), "cache for Debian packages")
	hw := fs.String("hardware", "", "hardware profile directory (default: hardware/ beside the recipe's directory)")
	refresh := fs.Bool("refresh", false, "fetch the Debian package index again even if the cached one is recent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("build: want one recipe file, got %d arguments", fs.NArg())
	}
	_, err := build(ctx, fs.Arg(0), *hw, *out, *cache, *refresh, stderr)
	return err
}

// build loads a recipe and builds it; shared by build and bench.
func build(ctx context.Context, path, hw, out, cache string, refresh bool, log io.Writer) (*image.Manifest, error) {
	r, err := recipe.Load(path, hw)
	if err != nil {
		return nil, err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return nil, err
	}
	if out == "" {
		out = "out/" + r.Name
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(log, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	return image.Build(ctx, r, image.Options{OutDir: out, CacheDir: cache, Epoch: epoch, Refresh: refresh, Logf: logf})
}

func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative number of seconds", s)
	}
	return v, nil
}
