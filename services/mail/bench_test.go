package mail

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/internal/container"
)

// BenchmarkWorkload reports the mail workload's figures (medians, never
// pass/fail): start time on an existing root (failover case), the first
// start that unpacks the template, one Monitor, the template's size, the
// unpacked root's size and the container's idle memory (sum of RSS and of
// PSS of its processes).
func BenchmarkWorkload(b *testing.B) {
	w, in, _ := nsWorkloadB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := in(func() error { return w.Start(ctx) }); err != nil {
		b.Fatalf("Start: %v\n%s", err, readLog(w))
	}
	first := time.Since(t0)
	time.Sleep(2 * time.Second) // idle
	rss, pss := containerMemory(b, w)
	var starts, monitors []time.Duration
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if err := w.Monitor(ctx); err != nil {
			b.Fatal(err)
		}
		monitors = append(monitors, time.Since(t))
		if err := w.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		t = time.Now()
		if err := in(func() error { return w.Start(ctx) }); err != nil {
			b.Fatal(err)
		}
		starts = append(starts, time.Since(t))
	}
	st, _ := os.Stat(w.Template)
	b.ReportMetric(float64(first.Milliseconds()), "first-start-ms")
	b.ReportMetric(float64(median(starts).Milliseconds()), "start-ms")
	b.ReportMetric(float64(median(monitors).Microseconds())/1000, "monitor-ms")
	b.ReportMetric(float64(st.Size())/(1<<20), "template-MiB")
	b.ReportMetric(float64(dirSize(w.rootfs()))/(1<<20), "rootfs-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "idle-rss-MiB")
	b.ReportMetric(float64(pss)/(1<<20), "idle-pss-MiB")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error { // a figure: what it cannot read it does not count
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// containerMemory sums Rss and Pss (smaps_rollup) over the processes in
// the container's PID namespace, the init included.
func containerMemory(b *testing.B, w *Workload) (rss, pss int64) {
	_, pid, err := w.host().Call(context.Background(), container.Request{Op: "status"})
	if err != nil {
		b.Fatal(err)
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		b.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l != ns {
			continue
		}
		sm, _ := os.ReadFile("/proc/" + e.Name() + "/smaps_rollup")
		for _, line := range strings.Split(string(sm), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				switch f[0] {
				case "Rss:":
					rss += kb << 10
				case "Pss:":
					pss += kb << 10
				}
			}
		}
	}
	return rss, pss
}
