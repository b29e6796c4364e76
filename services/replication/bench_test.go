package replication

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"tandem/internal/testenv"
	"tandem/lab/vmtest"
)

// BenchmarkReplicatedWrite measures the write throughput of the
// replicated volume as a ratio to a raw disk of the same guest: the
// guests of TestGuestFailover (QEMU TCG, 64 MiB virtio disks, a socket
// link on 127.0.0.1), with a second, raw 64 MiB virtio disk on guest A.
// The resource is seeded without an initial sync (SeedNew) and A is
// Primary, connected, protocol C. Each round, A writes 32 MiB in 1 MiB
// O_DIRECT writes and an fdatasync to /dev/drbd0 and to the raw disk,
// alternating which goes first (see guestBenchA); then it disconnects and
// does the same again. Reported: the median MB/s of each and the ratios
// replicated/raw of the medians, connected and disconnected.
//
// The guests boot once; TANDEM_BENCH_RUNS sets the rounds (default 5). It
// ignores b.N: run it with -benchtime 1x (make bench).
func BenchmarkReplicatedWrite(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireTool(b, vmtest.Tools...)
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_RUNS")); err == nil && v > 0 {
		rounds = v
	}
	ctx, cancel := context.WithTimeout(b.Context(), 9*time.Minute)
	defer cancel()
	img := newDisk(b, filepath.Join(b.TempDir(), "raw.img"))
	fwCfg := []string{"-fw_cfg", fmt.Sprintf("name=%s,string=%d", benchFwCfg, rounds)}
	p := runPair(ctx, b, [2][]string{append(fwCfg,
		"-drive", "file="+img+",format=raw,if=none,id=raw,cache=unsafe",
		// A PCI slot after the others: the guest names it vdb.
		"-device", "virtio-blk-pci,drive=raw,addr=0x10,serial="+benchRawSerial,
	), fwCfg})
	for i, r := range p.reports {
		if e, ok := r.marks[markError]; ok {
			b.Fatalf("guest %s failed: %s\nA:\n%s\nB:\n%s", "AB"[i:i+1], e, p.vms[0].Serial(), p.vms[1].Serial())
		}
	}
	repl, raw := benchFigures(b, p.reports[0].marks, markRound, rounds)
	alone, raw2 := benchFigures(b, p.reports[0].marks, markStandalone, rounds)
	var link []float64
	for i := range rounds {
		var l float64
		if _, err := fmt.Sscanf(p.reports[0].marks[markLink+strconv.Itoa(i)], "link=%g", &l); err != nil {
			b.Fatalf("guest A's %s%d: %v", markLink, i, err)
		}
		link = append(link, l)
	}
	mr, mw, ma, mw2, ml := median(repl), median(raw), median(alone), median(raw2), median(link)
	limit := min(mw, ml)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mr, "replicated-MB/s")
	b.ReportMetric(mw, "raw-MB/s")
	b.ReportMetric(ml, "link-MB/s")
	b.ReportMetric(mr/mw, "ratio")
	b.ReportMetric(mr/limit, "ratio-to-limit")
	b.ReportMetric(ma, "disconnected-MB/s")
	b.ReportMetric(ma/mw2, "disconnected-ratio")
	b.Logf("replication: write %d MiB in 1 MiB O_DIRECT writes + fdatasync, medians of %d rounds: replicated (connected, protocol C) %.1f MB/s, raw disk %.1f MB/s, link (TCP between the guests) %.1f MB/s; replicated/raw %.3f, replicated/min(raw, link) %.3f; peer disconnected %.1f MB/s, raw disk %.1f MB/s, ratio %.2f",
		benchSize>>20, rounds, mr, mw, ml, mr/mw, mr/limit, ma, mw2, ma/mw2)
}

// benchFigures reads guest A's per-round figures (replicated and raw
// MB/s) said under mark.
func benchFigures(b *testing.B, marks map[string]string, mark string, rounds int) (repl, raw []float64) {
	b.Helper()
	for i := range rounds {
		var r, w float64
		m := mark + strconv.Itoa(i)
		if _, err := fmt.Sscanf(marks[m], "replicated=%g raw=%g", &r, &w); err != nil {
			b.Fatalf("guest A's %s: %q: %v", m, marks[m], err)
		}
		repl, raw = append(repl, r), append(raw, w)
	}
	return repl, raw
}

// median is the middle value (the mean of the two middle ones for an
// even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
