package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"time"

	"tandem/image"
	"tandem/internal/service"
	"tandem/lab/qemu"
)

// runBench prints the image builder's figures: warm build time, artifact
// sizes and kernel-start-to-ready time under QEMU TCG, as medians.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.FlagSet("bench", "usage: tandem bench [-runs N] RECIPE.yaml\n\nBuilds the recipe once to warm the cache, then N more times, and boots the raw image N times (BIOS).\n", stderr)
	runs := fs.Int("runs", 3, "builds and boots to measure (after one warm-up build)")
	cache := fs.String("cache", image.DefaultCacheDir(), "cache for Debian packages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *runs < 1 {
		fs.Usage()
		return fmt.Errorf("bench: want one recipe and -runs >= 1")
	}
	out, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	fmt.Fprintf(stderr, "bench: warm-up build\n")
	if _, err := build(ctx, fs.Arg(0), "", out, *cache, false, io.Discard); err != nil {
		return err
	}
	var builds []float64
	var m *image.Manifest
	for i := 0; i < *runs; i++ {
		start := time.Now()
		if m, err = build(ctx, fs.Arg(0), "", out, *cache, false, io.Discard); err != nil {
			return err
		}
		builds = append(builds, time.Since(start).Seconds())
		fmt.Fprintf(stderr, "bench: build %d: %.1f s\n", i+1, builds[i])
	}
	fmt.Fprintf(stdout, "recipe %s, %d runs\n", m.Recipe, *runs)
	fmt.Fprintf(stdout, "warm build, all artifacts:   median %.1f s (min %.1f, max %.1f)\n", median(builds), minOf(builds), maxOf(builds))
	for _, a := range m.Artifacts {
		fmt.Fprintf(stdout, "%-29s %7.1f MiB%s\n", a.Kind+" ("+a.File+"):", float64(a.Size)/(1<<20), allocated(filepath.Join(out, a.File), a.Size))
	}
	raw, err := m.Path(out, image.KindRaw)
	if err != nil {
		return nil // nothing to boot
	}
	var ready []float64
	for i := 0; i < *runs; i++ {
		s, err := bootToReady(ctx, raw)
		if err != nil {
			return fmt.Errorf("bench: boot %d: %w", i+1, err)
		}
		ready = append(ready, s)
		fmt.Fprintf(stderr, "bench: boot %d: ready %.2f s after kernel start\n", i+1, s)
	}
	fmt.Fprintf(stdout, "kernel start to ready (TCG):  median %.2f s (min %.2f, max %.2f)\n", median(ready), minOf(ready), maxOf(ready))
	return nil
}

// allocated notes how much of a sparse file is really on disk.
func allocated(path string, size int64) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil || st.Blocks*512 >= size {
		return ""
	}
	return fmt.Sprintf(" (sparse: %.1f MiB allocated)", float64(st.Blocks*512)/(1<<20))
}

var readyRE = regexp.MustCompile(`tandem: ready \(slot \S+, ([0-9.]+) s after kernel start\)`)

// bootToReady boots the raw image once (BIOS, overlay disk) and returns
// the kernel's uptime at "tandem: ready".
func bootToReady(ctx context.Context, raw string) (float64, error) {
	dir, err := os.MkdirTemp("", "tandem-bench-vm-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "disk.qcow2")
	if err := qemu.Overlay(disk, raw, 2048); err != nil {
		return 0, err
	}
	vm, err := qemu.Start(ctx, qemu.Config{Disk: disk, Firmware: qemu.BIOS, Net: true, Dir: dir})
	if err != nil {
		return 0, err
	}
	defer vm.Kill()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	i, err := vm.WaitFor(wctx, 0, "tandem: ready")
	if err != nil {
		return 0, err
	}
	m := readyRE.FindStringSubmatch(vm.Line(i))
	if m == nil {
		return 0, fmt.Errorf("unexpected ready line %q", vm.Line(i))
	}
	return strconv.ParseFloat(m[1], 64)
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

func maxOf(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	return m
}
