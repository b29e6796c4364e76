package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/lab"
	"tandem/services/cluster"
	"tandem/services/mail/mailprobe"
)

// BenchmarkMailCluster measures issue 5's figures in the lab (TCG):
// boot to the cluster serving, unplanned failover (SIGKILL of the owner
// to the SMTP banner on the VIP) split at the new owner's milestones
// (times from its log; the nodes' clocks follow the host's through the
// lab's NTP server), resync of the killed node after it boots again
// (mail kept flowing meanwhile), the same after both data nodes are
// power-cycled, and each node's memory in use when idle; and issue 13's
// (mailFigures): submission throughput on the VIP replicated and with the
// peer cut off, in alternating phases, and the IMAPS login latency.
//
// TANDEM_BENCH_RUNS (default 5) failovers are made in one lab;
// TANDEM_BENCH_SOAK (a duration, default none) then keeps mail flowing
// that long and checks SMTP, IMAP and every acknowledged message after.
// Run it with scripts/bench-mail.sh.
func BenchmarkMailCluster(b *testing.B) {
	runs := benchRuns()
	var soak time.Duration
	if v := os.Getenv("TANDEM_BENCH_SOAK"); v != "" {
		var err error
		if soak, err = time.ParseDuration(v); err != nil {
			b.Fatalf("TANDEM_BENCH_SOAK=%q: %v", v, err)
		}
	}
	for i := 0; i < b.N; i++ {
		benchMailCluster(b, runs, soak)
	}
}

// BenchmarkLabBoot measures first boot to the cluster formed and to it
// serving: TANDEM_BENCH_RUNS (default 5) fresh labs, one after the other,
// each timed from the VMs' start (images already built) to every member
// online with quorum in `tandemctl status`, then to the SMTP banner on the
// VIP. The first boot includes pairing, DRBD's first start, mke2fs and
// the template's unpack. Run it with scripts/bench-mail.sh.
func BenchmarkLabBoot(b *testing.B) {
	runs := benchRuns()
	var formed, serving []float64
	for r := 0; r < runs; r++ {
		// A sub-benchmark per lab: its cleanup stops the lab before the
		// next one takes the same namespace and addresses.
		b.Run(fmt.Sprintf("lab-%d", r+1), func(b *testing.B) {
			m := startMailLab(b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			m.retry(ctx, "all members online", func(ctx context.Context) error {
				s, err := m.status(ctx)
				if err != nil {
					return err
				}
				if !s.Quorum || len(s.Nodes) != len(lab.Nodes) {
					return fmt.Errorf("quorum %v, %d members", s.Quorum, len(s.Nodes))
				}
				for _, n := range s.Nodes {
					if !n.Online {
						return fmt.Errorf("%s offline", n.Name)
					}
				}
				return nil
			})
			formed = append(formed, time.Since(m.start).Seconds())
			m.waitServing(ctx, "")
			serving = append(serving, time.Since(m.start).Seconds())
			b.Logf("lab %d: formed %.1f s, serving %.1f s", r+1, formed[len(formed)-1], serving[len(serving)-1])
		})
	}
	report(b, "boot-to-formed", formed)
	report(b, "boot-to-serving", serving)
}

// BenchmarkFailoverFencing is issue 14's side-by-side figure: in one run,
// TANDEM_BENCH_RUNS (default 5) SIGKILLs of the owner in a lab whose data
// nodes fence each other through the lab's BMCs, then as many in a fresh
// lab without fence devices (a takeover waits for the lease), each with
// its split at the new owner's milestones. Run it with
// scripts/bench-mail.sh.
func BenchmarkFailoverFencing(b *testing.B) {
	runs := benchRuns()
	for i := 0; i < b.N; i++ {
		for _, c := range []struct {
			name    string
			newSeed func([]lab.Node) (*lab.ClusterSeed, error)
		}{{"fencing", lab.NewClusterSeed}, {"lease", lab.NewClusterSeedWithoutFencing}} {
			b.Run(c.name, func(b *testing.B) {
				m := startMailLabSeeded(b, c.newSeed)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*10*time.Minute+20*time.Minute)
				defer cancel()
				m.waitServing(ctx, "")
				m.waitReplicated(ctx)
				time.Sleep(20 * time.Second) // settle: no first-boot work left
				k := m.killRuns(b, ctx, runs)
				m.checkAllReadable(ctx)
				k.report(b, c.name+"-failover")
				if c.name == "fencing" && k.fenced < runs {
					b.Errorf("%d of %d takeovers fenced the killed owner first", k.fenced, runs)
				}
			})
		}
	}
}

// kills are the figures of killRuns.
type kills struct {
	banner, resync []float64
	split          map[string][]float64
	// resets are watchdog resets of data nodes; fenced counts the
	// takeovers whose new owner logged the killed owner's power-off
	// confirmed.
	resets, fenced int
}

// killRuns SIGKILLs the owner runs times with mail flowing, each time
// timing the takeover to the SMTP banner on the VIP, then boots the killed
// node again and waits until replication is UpToDate.
func (m *mailLab) killRuns(b *testing.B, ctx context.Context, runs int) kills {
	k := kills{split: map[string][]float64{}}
	for r := 0; r < runs; r++ {
		stop := m.sender()
		time.Sleep(3 * time.Second)
		// The owner now: a watchdog reset since the last run may have
		// moved the group.
		killed := m.waitServing(ctx, "")
		boots := m.boots("data-a") + m.boots("data-b")
		at := time.Now()
		if err := m.l.Kill(killed); err != nil {
			b.Fatal(err)
		}
		owner := m.waitServing(ctx, killed)
		k.banner = append(k.banner, time.Since(at).Seconds())
		times, line := m.split(owner, at)
		for name, t := range times {
			k.split[name] = append(k.split[name], t)
		}
		if _, ok := m.logTime(owner, at, fenceConfirmed); ok {
			k.fenced++
		}
		b.Logf("run %d: kill %s -> banner from %s %.1f s; %s", r+1, killed, owner, k.banner[len(k.banner)-1], line)
		if err := m.l.Boot(killed); err != nil {
			b.Fatal(err)
		}
		if err := m.l.WaitReady(ctx, killed); err != nil {
			b.Fatal(err)
		}
		back := time.Now()
		m.waitReplicated(ctx)
		k.resync = append(k.resync, time.Since(back).Seconds())
		acked, failed := stop()
		// Boots beyond the killed node's are watchdog resets.
		reset := m.boots("data-a") + m.boots("data-b") - boots - 1
		k.resets += reset
		b.Logf("run %d: %s ready to replication UpToDate again %.1f s; %d messages acknowledged, %d attempts failed; %d watchdog resets", r+1, killed, k.resync[len(k.resync)-1], acked, failed, reset)
	}
	b.Logf("watchdog resets of data nodes during the %d runs: %d; takeovers that fenced first: %d", runs, k.resets, k.fenced)
	return k
}

// report reports k's medians, each name prefixed.
func (k kills) report(b *testing.B, prefix string) {
	report(b, prefix+"-banner", k.banner)
	for _, ms := range milestones {
		report(b, prefix+"-"+ms.name, k.split[ms.name])
	}
	report(b, prefix+"-resync-after-boot", k.resync)
}

// benchRuns is TANDEM_BENCH_RUNS, 5 when unset.
func benchRuns() int {
	if v, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_RUNS")); err == nil && v > 0 {
		return v
	}
	return 5
}

func benchMailCluster(b *testing.B, runs int, soak time.Duration) {
	m := startMailLab(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*10*time.Minute+soak+30*time.Minute)
	defer cancel()
	m.waitServing(ctx, "")
	b.Logf("boot to cluster serving (lab start to SMTP banner on the VIP): %.1f s", time.Since(m.start).Seconds())
	b.ReportMetric(time.Since(m.start).Seconds(), "s-boot-to-serving")
	m.waitReplicated(ctx)
	time.Sleep(20 * time.Second) // settle: no first-boot work left
	for _, n := range lab.Nodes {
		if mem := m.memory(ctx, n); mem != nil {
			b.Logf("idle memory on %s: %d MiB used of %d MiB", n.Name, mem.UsedMiB(), mem.TotalKiB>>10)
			b.ReportMetric(float64(mem.UsedMiB()), "MiB-idle-"+n.Name)
		}
	}
	m.mailFigures(b, ctx)

	k := m.killRuns(b, ctx, runs)
	m.checkAllReadable(ctx)
	k.report(b, "failover")

	at := time.Now()
	for _, n := range []string{"data-a", "data-b"} {
		if err := m.l.Reboot(n); err != nil {
			b.Fatal(err)
		}
	}
	owner := m.waitServing(ctx, "")
	b.Logf("both data nodes power-cycled to SMTP banner from %s: %.1f s", owner, time.Since(at).Seconds())
	b.ReportMetric(time.Since(at).Seconds(), "s-powercycle-to-serving")
	m.checkAllReadable(ctx)

	if soak > 0 {
		// Loaded but healthy: the group must stay where it is and no node
		// may fence another (issue 14: no false failover).
		owner := m.waitServing(ctx, "")
		at := time.Now()
		stop := m.sender()
		time.Sleep(soak)
		acked, failed := stop()
		if _, err := mailprobe.Banner(ctx, m.l.Dial, vipSMTP); err != nil {
			b.Errorf("after a %v soak: SMTP: %v", soak, err)
		}
		if s, err := m.status(ctx); err != nil || s.Owner != owner {
			b.Errorf("after a %v soak the owner is %v (%v), want %s: the group moved", soak, s, err, owner)
		}
		m.noFence(b, at, "during the soak")
		if t, ok := m.logTime(otherDataNode(owner), at, leaseAcquired); ok {
			b.Errorf("%s took the group's lease at %s during the soak", otherDataNode(owner), t.Format(time.StampMilli))
		}
		m.checkAllReadable(ctx)
		b.Logf("soak %v: %d messages acknowledged, %d attempts failed; SMTP and IMAP answer", soak, acked, failed)
	}
}

// report logs the median and range of xs (seconds) and reports the median.
func report(b *testing.B, name string, xs []float64) {
	if len(xs) == 0 {
		b.Logf("%s: no samples", name)
		return
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.1f", x))
	}
	b.Logf("%s: median %.1f s over %d runs (%s)", name, med, len(xs), strings.Join(parts, ", "))
	b.ReportMetric(med, "s-"+strings.ReplaceAll(name, " ", "-")) // a unit has no spaces
}

// memory asks node n's API for its memory.
func (m *mailLab) memory(ctx context.Context, n lab.Node) *cluster.Memory {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := m.l.HostCommand(c, m.ctl, "-state", m.admin, "-endpoint", "https://"+n.Addr.String()+":7443", "status", "-json").Output()
	if err != nil {
		m.t.Logf("memory of %s: %v", n.Name, err)
		return nil
	}
	var s cluster.Status
	if json.Unmarshal(out, &s) != nil {
		return nil
	}
	return s.Memory
}
