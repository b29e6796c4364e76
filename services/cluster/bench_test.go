package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/testenv"
)

// BenchmarkCluster measures, on the namespace lab with default timings,
// unplanned failover (SIGKILL of the owner until the VIP answers on the
// peer), detection (SIGKILL until the peer holds the lease) and planned
// move, then keepalived (VRRP, default timers) on the same namespaces as
// the unsafe baseline. It ignores b.N: run it with -benchtime 1x
// (scripts/bench-cluster.sh). TANDEM_BENCH_RUNS sets the runs (default
// 10); TANDEM_BENCH_SOAK (e.g. 10m) adds the false-failover soak under
// full CPU load on both data nodes.
func BenchmarkCluster(b *testing.B) {
	runs := 10
	if v := os.Getenv("TANDEM_BENCH_RUNS"); v != "" {
		if _, err := fmt.Sscan(v, &runs); err != nil {
			b.Fatalf("TANDEM_BENCH_RUNS=%q: %v", v, err)
		}
	}
	l := newLab(b)
	l.observe()
	l.bootstrap(b)
	l.settle(30 * time.Second)

	var unplanned, detect, planned []time.Duration
	for i := 0; i < runs; i++ {
		u, d := l.benchKill()
		unplanned, detect = append(unplanned, u), append(detect, d)
	}
	for i := 0; i < runs; i++ {
		planned = append(planned, l.benchMove())
	}
	var falseFailovers = -1
	if v := os.Getenv("TANDEM_BENCH_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("TANDEM_BENCH_SOAK=%q: %v", v, err)
		}
		falseFailovers = l.soak(d)
	}
	for _, n := range []string{"a", "b", "c"} {
		l.kill(n, syscall.SIGTERM)
	}
	keep := l.benchKeepalived(runs)

	report := func(name string, ds []time.Duration) (med, worst float64) {
		med, worst = stats(ds)
		b.ReportMetric(med, name+"-median-s")
		b.ReportMetric(worst, name+"-worst-s")
		b.Logf("%-22s median %6.2fs  worst %6.2fs  (%d runs)", name, med, worst, len(ds))
		return med, worst
	}
	um, _ := report("unplanned-failover", unplanned)
	report("detection", detect)
	report("planned-move", planned)
	km, _ := report("keepalived-failover", keep)
	b.ReportMetric(um/km, "tandem/keepalived")
	b.Logf("unplanned failover tandem/keepalived median ratio: %.2f", um/km)
	if falseFailovers >= 0 {
		b.ReportMetric(float64(falseFailovers), "false-failovers")
		b.Logf("false failovers under full CPU load for %s: %d", os.Getenv("TANDEM_BENCH_SOAK"), falseFailovers)
	}
}

func stats(ds []time.Duration) (median, worst float64) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Seconds(), s[len(s)-1].Seconds()
}

// answers reports whether the VIP answers a ping from the client
// namespace while it sits on node want.
func (l *lab) answers(want string) bool {
	out, _ := l.net.Cmd(context.Background(), l.nodes[want].ns, "ip", "-o", "-4", "addr", "show", "dev", "lan0").Output()
	if !strings.Contains(string(out), " "+vipAddr+"/") {
		return false
	}
	return l.net.Cmd(context.Background(), l.client, "ping", "-c", "1", "-W", "1", vipAddr).Run() == nil
}

func (l *lab) waitAnswers(want string, limit time.Duration) time.Time {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if l.answers(want) {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Fatalf("VIP did not answer on %s within %v", want, limit)
	return time.Time{}
}

var acquiredRE = regexp.MustCompile(`time=(\S+) level=INFO msg="acquired the group's lease"`)

// lastAcquired is the time of the last lease acquisition in a node's log.
func (l *lab) lastAcquired(name string) time.Time {
	m := acquiredRE.FindAllStringSubmatch(l.logOf(name), -1)
	if len(m) == 0 {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, m[len(m)-1][1])
	return t
}

func (l *lab) benchKill() (failover, detection time.Duration) {
	owner := l.settle(30 * time.Second)
	peer := other(owner)
	began := time.Now()
	l.kill(owner, syscall.SIGKILL)
	// The watchdog would reset the node; its address goes with it.
	l.net.Run(l.nodes[owner].ns, "ip", "addr", "del", vipAddr+"/24", "dev", "lan0")
	at := l.waitAnswers(peer, 30*time.Second)
	acq := l.lastAcquired(peer)
	l.start(owner)
	l.waitFor(60*time.Second, owner+" back", func() bool { return l.healthy(owner) })
	return at.Sub(began), acq.Sub(began)
}

func (l *lab) benchMove() time.Duration {
	owner := l.settle(30 * time.Second)
	peer := other(owner)
	began := time.Now()
	l.mustCtl("c", "resource", "move", peer)
	at := l.waitAnswers(peer, 30*time.Second)
	l.waitFor(10*time.Second, "the move to settle", func() bool { return l.obs.owner() == peer })
	return at.Sub(began)
}

// soak burns all CPU (one busy loop per core, split between both data
// nodes' namespaces) for d and counts owner changes.
func (l *lab) soak(d time.Duration) int {
	for i := 0; i < max(2, runtime.NumCPU()); i++ {
		n := []string{"a", "b"}[i%2]
		l.net.Start(l.net.Cmd(context.Background(), l.nodes[n].ns, "sh", "-c", "while :; do :; done"))
	}
	from := time.Now()
	owner := l.settle(30 * time.Second)
	time.Sleep(d)
	changes := 0
	for _, s := range l.obs.since(from) {
		if s.owner != "" && s.owner != owner {
			changes++
			owner = s.owner
		}
	}
	return changes
}

const keepalivedConf = `global_defs {
  router_id %s
}
vrrp_instance VI_1 {
  state BACKUP
  interface lan0
  virtual_router_id 51
  priority 100
  advert_int 1
  nopreempt
  virtual_ipaddress {
    %s/24 dev lan0
  }
}
`

// benchKeepalived runs keepalived on a and b with default VRRP timers
// and measures SIGKILL of the master until the VIP answers on the backup.
func (l *lab) benchKeepalived(runs int) []time.Duration {
	testenv.RequireTool(l.t, "keepalived")
	start := func(n string) *keepalivedProc {
		dir := filepath.Join(l.nodes[n].dir, "keepalived")
		conf := filepath.Join(dir, "keepalived.conf")
		testenv.WriteFile(l.t, conf, []byte(fmt.Sprintf(keepalivedConf, n, vipAddr)), 0o644)
		cmd := l.net.Cmd(context.Background(), l.nodes[n].ns, "keepalived", "--dont-fork", "--log-console", "--vrrp",
			"-f", conf, "-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"), "-c", filepath.Join(dir, "c.pid"))
		f, _ := os.Create(filepath.Join(dir, "log"))
		cmd.Stdout, cmd.Stderr = f, f
		l.net.Start(cmd)
		return &keepalivedProc{cmd: cmd, vrrpPid: filepath.Join(dir, "v.pid")}
	}
	procs := map[string]*keepalivedProc{"a": start("a"), "b": start("b")}
	holder := func() string {
		for _, n := range []string{"a", "b"} {
			out, _ := l.net.Cmd(context.Background(), l.nodes[n].ns, "ip", "-o", "-4", "addr", "show", "dev", "lan0").Output()
			if strings.Contains(string(out), " "+vipAddr+"/") {
				return n
			}
		}
		return ""
	}
	var out []time.Duration
	for i := 0; i < runs; i++ {
		var master string
		l.waitFor(30*time.Second, "a keepalived master", func() bool { master = holder(); return master != "" })
		time.Sleep(2 * time.Second) // let the backup see adverts
		backup := other(master)
		began := time.Now()
		procs[master].kill()
		l.net.Run(l.nodes[master].ns, "ip", "addr", "del", vipAddr+"/24", "dev", "lan0")
		at := l.waitAnswers(backup, 30*time.Second)
		out = append(out, at.Sub(began))
		procs[master] = start(master)
	}
	for _, p := range procs {
		p.kill()
	}
	return out
}

type keepalivedProc struct {
	cmd     *exec.Cmd
	vrrpPid string // pid file of the VRRP child
}

// kill ends keepalived's VRRP child (by the PID in its pid file) and the
// parent (by its PID).
func (p *keepalivedProc) kill() {
	if b, err := os.ReadFile(p.vrrpPid); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}
