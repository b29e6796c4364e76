package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"tandem/internal/testenv"
	"tandem/lab"
	"tandem/services/cluster"
	"tandem/services/mail/mailprobe"
	"tandem/services/mail/mailtls"
)

// mailLab is the lab with its three nodes paired into a cluster from their
// seeds, the host's administrator certificate, and the record of every
// message the VIP acknowledged.
type mailLab struct {
	t     testing.TB
	l     *lab.Lab
	dir   string
	seed  *lab.ClusterSeed
	ctl   string // tandemctl binary
	admin string // its -state directory
	start time.Time

	mu    sync.Mutex
	acked []string // Message-IDs that got a 250
	seq   int
	// imapTLS checks the certificate IMAPS on the VIP serves: the mail
	// CA's (tandemctl mail cert show -ca), later the one installed.
	imapTLS *tls.Config
}

var (
	vipSMTP  = lab.VIP.String() + ":25"
	vipIMAPS = lab.VIP.String() + ":993"
	// mailName is the service's name, the one its certificate is for.
	mailName = "mail." + lab.ClusterDomain
)

// startMailLab builds both images, boots the lab with the cluster seed and
// obtains the administrator certificate.
func startMailLab(t testing.TB) *mailLab { return startMailLabSeeded(t, lab.NewClusterSeed) }

// startMailLabSeeded is startMailLab with the seeds newSeed makes.
func startMailLabSeeded(t testing.TB, newSeed func([]lab.Node) (*lab.ClusterSeed, error)) *mailLab {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "swaks")
	build(t, "kvm-node")
	build(t, "kvm-arbitrator")
	seed, err := newSeed(lab.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	m := &mailLab{t: t, dir: t.TempDir(), seed: seed}
	m.ctl = filepath.Join(m.dir, "tandemctl")
	if out, err := exec.Command("go", "build", "-o", m.ctl, "../cmd/tandemctl").CombinedOutput(); err != nil {
		t.Fatalf("build tandemctl: %v\n%s", err, out)
	}
	m.admin = filepath.Join(m.dir, "admin")
	m.start = time.Now()
	m.l, err = lab.Start(context.Background(), lab.Options{Dir: filepath.Join(m.dir, "lab"), Images: images(), Nodes: seed.Apply(lab.Nodes), Logf: t.Logf,
		BMCPasswords: seed.BMCPasswords})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, filepath.Join(m.dir, "lab"))
		}
		if err := m.l.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootLimit)
	defer cancel()
	if err := m.l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The founder serves the pairing API once its etcd runs.
	m.retry(ctx, "administrator certificate", func(ctx context.Context) error {
		_, err := m.run(ctx, "cluster", "admin", "-cluster", lab.ClusterName, "-name", lab.AdminName,
			"-peer", "https://"+lab.Nodes[0].Addr.String()+":7443", "-code", seed.AdminCode)
		return err
	})
	// The first data node to start the mail makes the mail CA.
	m.retry(ctx, "the mail CA", func(ctx context.Context) error {
		out, err := m.run(ctx, "mail", "cert", "show", "-ca")
		if err != nil {
			return err
		}
		m.imapTLS, err = trusting(out)
		return err
	})
	return m
}

// trusting is a client configuration for the mail service's name that
// trusts only the CA certificate caPEM.
func trusting(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no CA certificate in %q", caPEM)
	}
	return &tls.Config{RootCAs: pool, ServerName: mailName}, nil
}

// tlsConfig is the IMAPS client configuration in force.
func (m *mailLab) tlsConfig() *tls.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.imapTLS
}

// run runs tandemctl from the lab's namespace against the arbiter, which
// every test keeps up and on the majority side.
func (m *mailLab) run(ctx context.Context, args ...string) ([]byte, error) {
	return m.runAt(ctx, lab.Nodes[2].Name, "", args...)
}

// runAt runs tandemctl against node's API with stdin.
func (m *mailLab) runAt(ctx context.Context, node, stdin string, args ...string) ([]byte, error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr := ""
	for _, n := range lab.Nodes {
		if n.Name == node {
			addr = n.Addr.String()
		}
	}
	full := append([]string{"-state", m.admin, "-endpoint", "https://" + addr + ":7443"}, args...)
	cmd := m.l.HostCommand(c, m.ctl, full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("tandemctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// retry calls f every 2 s until it succeeds or ctx ends (then the test fails).
func (m *mailLab) retry(ctx context.Context, what string, f func(context.Context) error) {
	m.t.Helper()
	m.retryEvery(ctx, 2*time.Second, what, f)
}

func (m *mailLab) retryEvery(ctx context.Context, every time.Duration, what string, f func(context.Context) error) {
	m.t.Helper()
	var err error
	for {
		if err = f(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			m.t.Fatalf("%s: %v (last error: %v)", what, ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

func (m *mailLab) status(ctx context.Context) (*cluster.Status, error) {
	return m.statusAt(ctx, lab.Nodes[2].Name)
}

// statusAt is tandemctl status as node's API answers it, decoded.
func (m *mailLab) statusAt(ctx context.Context, node string) (*cluster.Status, error) {
	out, err := m.runAt(ctx, node, "", "status", "-json")
	if err != nil {
		return nil, err
	}
	var s cluster.Status
	return &s, json.Unmarshal(out, &s)
}

// waitVoting waits until tandemctl status counts all three members voting
// and online, and returns that status as printed.
func (m *mailLab) waitVoting(ctx context.Context) []byte {
	m.t.Helper()
	var out []byte
	m.retry(ctx, "all three members voting and online", func(ctx context.Context) error {
		var err error
		if out, err = m.run(ctx, "status"); err != nil {
			return err
		}
		if !strings.Contains(string(out), "Quorum: yes (3 of 3 members online)") {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	})
	return out
}

// waitServing waits until the group runs in full on a node other than
// notOn and the VIP answers SMTP, and returns that node. It asks every
// 500 ms: its return is the failover figures' end.
func (m *mailLab) waitServing(ctx context.Context, notOn string) string {
	m.t.Helper()
	var owner string
	m.retryEvery(ctx, 500*time.Millisecond, "group serving on a node other than "+notOn, func(ctx context.Context) error {
		s, err := m.status(ctx)
		if err != nil {
			return err
		}
		if s.Owner == "" || s.Owner == notOn {
			return fmt.Errorf("owner %q", s.Owner)
		}
		for _, r := range s.Group {
			if r.States[s.Owner] != "started" {
				return fmt.Errorf("%s on %s is %q", r.Name, s.Owner, r.States[s.Owner])
			}
		}
		if _, err := mailprobe.Banner(ctx, m.l.Dial, vipSMTP); err != nil {
			return err
		}
		owner = s.Owner
		return nil
	})
	return owner
}

// replication is tandemctl replication status, decoded.
func (m *mailLab) replication(ctx context.Context) (*cluster.ReplicationStatus, error) {
	out, err := m.run(ctx, "replication", "status", "-json")
	if err != nil {
		return nil, err
	}
	var rs cluster.ReplicationStatus
	return &rs, json.Unmarshal(out, &rs)
}

// waitReplicated waits until both data nodes are connected and UpToDate
// with no split brain, and returns the most out-of-sync data it saw on
// the way.
func (m *mailLab) waitReplicated(ctx context.Context) (maxOutOfSyncKiB uint64) {
	m.t.Helper()
	m.retry(ctx, "replication connected and UpToDate", func(ctx context.Context) error {
		rs, err := m.replication(ctx)
		if err != nil {
			return err
		}
		if len(rs.Nodes) != 2 {
			return fmt.Errorf("%d nodes report", len(rs.Nodes))
		}
		for n, st := range rs.Nodes {
			maxOutOfSyncKiB = max(maxOutOfSyncKiB, st.OutOfSyncKiB)
			if !st.Connected() {
				return fmt.Errorf("%s: %+v", n, st)
			}
		}
		return nil
	})
	return maxOutOfSyncKiB
}

// sendOne sends one message to the VIP and records it if acknowledged.
func (m *mailLab) sendOne(ctx context.Context) error {
	m.mu.Lock()
	m.seq++
	id := fmt.Sprintf("<e2e-%d-%d@lab.tandem.test>", m.start.Unix(), m.seq)
	m.mu.Unlock()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ok, err := mailprobe.Send(c, m.l.Dial, vipSMTP, mailprobe.Message{
		From: "e2e@example.test", To: m.seed.MailUser, Subject: "e2e " + id, MessageID: id, Body: "tandem e2e\n",
	})
	if ok {
		m.mu.Lock()
		m.acked = append(m.acked, id)
		m.mu.Unlock()
	}
	return err
}

// sender sends messages back to back until the returned stop is called;
// failures (the service moving) are expected and only counted.
func (m *mailLab) sender() (stop func() (acked, failed int)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var ok, bad int
	m.mu.Lock()
	before := len(m.acked)
	m.mu.Unlock()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := m.sendOne(ctx); err != nil {
				bad++
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	return func() (int, int) {
		cancel()
		<-done
		m.mu.Lock()
		ok = len(m.acked) - before
		m.mu.Unlock()
		return ok, bad
	}
}

// checkAllReadable waits until every acknowledged message is in the
// user's INBOX on the VIP (a queued message may still be on its way to
// the mailbox) and fails the test naming the ones that never arrive.
func (m *mailLab) checkAllReadable(ctx context.Context) {
	m.t.Helper()
	m.mu.Lock()
	want := append([]string(nil), m.acked...)
	m.mu.Unlock()
	missing := want // until an INBOX is read, none is known to be there
	read := false
	c, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		ids, err := mailprobe.Inbox(c, mailprobe.TLSDial(m.l.Dial, m.tlsConfig()), vipIMAPS, m.seed.MailUser, m.seed.MailPassword)
		if err == nil {
			read = true
			have := map[string]bool{}
			for _, id := range ids {
				have[id] = true
			}
			missing = nil
			for _, id := range want {
				if !have[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) == 0 {
				m.t.Logf("all %d acknowledged messages are readable over IMAPS on the VIP (%d in the INBOX)", len(want), len(ids))
				return
			}
		}
		select {
		case <-c.Done():
			if !read {
				m.t.Fatalf("the INBOX was never readable on the VIP in 3 minutes, so none of %d acknowledged messages could be checked (last IMAP error: %v)", len(want), err)
			}
			m.t.Fatalf("%d of %d acknowledged messages lost: %v (last IMAP error: %v)", len(missing), len(want), missing, err)
		case <-time.After(2 * time.Second):
		}
	}
}

// logTime finds the first line at or after since in node's console log
// whose message matches re, and returns its slog time (the nodes' clocks
// follow the host's through the lab's NTP server).
func (m *mailLab) logTime(node string, since time.Time, re *regexp.Regexp) (time.Time, bool) {
	f, err := os.Open(filepath.Join(m.dir, "lab", node+".log"))
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// The kernel shares the console: a printk can land at the start
		// of a line, so the time is looked for anywhere in it.
		line := sc.Text()
		ts := timeRE.FindStringSubmatch(line)
		if ts == nil || !re.MatchString(line) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts[1])
		if err == nil && !at.Before(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// boots counts node's boots so far: PID 1's first line, which carries no
// time, in its console log.
func (m *mailLab) boots(node string) int {
	b, _ := os.ReadFile(filepath.Join(m.dir, "lab", node+".log"))
	return strings.Count(string(b), "tandem: init starting")
}

var (
	timeRE     = regexp.MustCompile(`time=(\S+)`)
	vipStopped = regexp.MustCompile(`msg="resource action done" .*op=stop resource=vip`)
	vipStarted = regexp.MustCompile(`msg="resource action done" .*op=start resource=vip`)
	// fenceConfirmed: the survivor powered the owner off through its BMC
	// and the BMC said it is off.
	fenceConfirmed = regexp.MustCompile(`msg="fenced: power off confirmed"`)
	// leaseAcquired: a node took the group's lease. peerOutdated and
	// outdatedCleared: DRBD's fence-peer handler on the owner had the
	// daemon outdate the peer; after-resync-target on the peer had it
	// clear the record (services/cluster/drbd.go).
	leaseAcquired   = regexp.MustCompile(`msg="acquired the group's lease"`)
	peerOutdated    = regexp.MustCompile(`msg="replication: peer outdated"`)
	outdatedCleared = regexp.MustCompile(`msg="replication: outdated record cleared"`)
)

// poweredOff returns when node's BMC (lab/bmc.go) powered it off after
// at, from the BMC's record, if it did.
func (m *mailLab) poweredOff(node string, at time.Time) (time.Time, bool) {
	b, _ := os.ReadFile(filepath.Join(m.dir, "lab", node, "bmc", "power.log"))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if t, err := time.Parse(time.RFC3339Nano, f[0]); err == nil && t.After(at) {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// powerOn boots node again if it is off (powered off by its BMC: a fenced
// node stays off until an admin powers it on) and waits until it is up.
func (m *mailLab) powerOn(ctx context.Context, node string) {
	m.t.Helper()
	for _, n := range m.l.Status().Nodes {
		if n.Name == node && n.Up {
			return
		}
	}
	m.t.Logf("%s is off (fenced): powering it on", node)
	if err := m.l.Boot(node); err != nil {
		m.t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, bootLimit)
	defer cancel()
	if err := m.l.WaitReady(c, node); err != nil {
		m.t.Fatal(err)
	}
}

// milestones are a new owner's steps in taking the group over, in order,
// as its log shows them.
var milestones = []struct {
	name string
	re   *regexp.Regexp
}{
	{"fence confirmed", fenceConfirmed},
	{"detection", leaseAcquired},
	{"promote", regexp.MustCompile(`msg="resource action done" .*op=start resource=drbd`)},
	{"mount", regexp.MustCompile(`msg="resource action done" .*op=start resource=fs`)},
	// rspamd's milter answering: the start waits for it (docs/mail.md).
	{"milter", regexp.MustCompile(`msg="mail: rspamd's milter answering`)},
	{"workload", regexp.MustCompile(`msg="resource action done" .*op=start resource=mail`)},
	{"vip", vipStarted},
}

// split returns how many seconds after at the new owner reached each
// milestone its log shows, and the same as one line for the test's log.
func (m *mailLab) split(owner string, at time.Time) (map[string]float64, string) {
	times := map[string]float64{}
	var parts []string
	for _, ms := range milestones {
		if t, ok := m.logTime(owner, at, ms.re); ok {
			times[ms.name] = t.Sub(at).Seconds()
			parts = append(parts, fmt.Sprintf("%s %.1f s", ms.name, times[ms.name]))
		}
	}
	return times, strings.Join(parts, ", ")
}

// logMove logs how long the group took from at (what happened then) to
// the SMTP banner on the VIP from owner, with the new owner's split.
func (m *mailLab) logMove(t testing.TB, what, owner string, at time.Time) {
	t.Helper()
	took := time.Since(at)
	_, line := m.split(owner, at)
	t.Logf("%s to SMTP banner on the VIP from %s: %.1f s (%s)", what, owner, took.Seconds(), line)
}

// TestMailCluster is issue 5's end-to-end run: three images pair with no
// console input; mail sent to the VIP survives a hard kill of the owner, a
// partition of the owner, a planned standby and online, and a power cycle
// of both data nodes, with every acknowledged message readable afterwards.
func TestMailCluster(t *testing.T) {
	m := startMailLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	owner := m.waitServing(ctx, "")
	t.Logf("cluster formed and serving on %s %.0f s after the lab started", owner, time.Since(m.start).Seconds())
	// A member that joined last may still be a learner, which status must
	// not count: wait until all three vote, then check the rest.
	c, cancelVoters := context.WithTimeout(ctx, 3*time.Minute)
	out := m.waitVoting(c)
	cancelVoters()
	t.Logf("all three members voting and online %.0f s after the lab started", time.Since(m.start).Seconds())
	for _, want := range []string{"Online: [ data-a data-b ]", "Arbitrator: [ arbiter ]", "Group owner: ", "Mail certificate: " + mailName + " (cluster), expires "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tandemctl status lacks %q:\n%s", want, out)
		}
	}
	m.waitReplicated(ctx)
	for i := 0; i < 5; i++ {
		if err := m.sendOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m.checkAllReadable(ctx)
	m.submit(ctx)
	// The admin's own certificate, installed before the failovers: the
	// IMAPS checks after each failover trust only its CA.
	m.installCert(ctx)
	m.checkAllReadable(ctx)

	t.Run("kill owner", func(t *testing.T) {
		// A user added through the owner's API logs in on the VIP, and
		// after the failover too.
		const carol, carolPW = "carol@" + lab.ClusterDomain, "carol's long password"
		if _, err := m.runAt(ctx, m.waitServing(ctx, ""), carolPW+"\n", "mail", "user", "add", carol, "-quota", "100"); err != nil {
			t.Fatal(err)
		}
		m.retry(ctx, "the added user logging in on the VIP", func(ctx context.Context) error {
			_, err := mailprobe.Inbox(ctx, mailprobe.TLSDial(m.l.Dial, m.tlsConfig()), vipIMAPS, carol, carolPW)
			return err
		})
		if out, err := m.run(ctx, "mail", "user", "list"); err != nil || !strings.Contains(string(out), carol) || !strings.Contains(string(out), m.seed.MailUser) {
			t.Errorf("mail user list = %v\n%s; want the imported %s and %s", err, out, m.seed.MailUser, carol)
		}
		stop := m.sender()
		time.Sleep(5 * time.Second)
		killed := m.waitServing(ctx, "") // a watchdog reset may have moved the group
		at := time.Now()
		if err := m.l.Kill(killed); err != nil {
			t.Fatal(err)
		}
		owner := m.waitServing(ctx, killed)
		m.logMove(t, "SIGKILL of "+killed, owner, at)
		// The lab's seeds configure fencing: the survivor fenced the
		// dead owner (already off: a success) and took over on the BMC's
		// word, not at the lease's expiry.
		if _, ok := m.logTime(owner, at, fenceConfirmed); !ok {
			t.Errorf("%s took over without fencing %s (no %q in its log)", owner, killed, fenceConfirmed)
		}
		m.retry(ctx, "the added user logging in after the failover", func(ctx context.Context) error {
			_, err := mailprobe.Inbox(ctx, mailprobe.TLSDial(m.l.Dial, m.tlsConfig()), vipIMAPS, carol, carolPW)
			return err
		})
		time.Sleep(5 * time.Second)
		acked, failed := stop()
		t.Logf("%d messages acknowledged, %d attempts failed while the service moved", acked, failed)
		m.checkAllReadable(ctx)
		if err := m.l.Boot(killed); err != nil {
			t.Fatal(err)
		}
		// The peer resyncs what changed and the crashed primary's
		// activity log: a few hundred MiB at most. When mke2fs had
		// discarded the whole device, every extent was in that log and
		// the peer resynced all 1.5 GiB, starving both nodes for minutes.
		oos := m.waitReplicated(ctx)
		t.Logf("resync after the crash: at most %d MiB out of sync seen", oos>>10)
		if limit := uint64(lab.Nodes[0].DiskMiB) << 10 / 4; oos > limit {
			t.Errorf("%d KiB out of sync after a crash of the primary, over a quarter of the data disk (%d KiB): the whole volume was resynced", oos, limit)
		}
	})

	t.Run("partition owner", func(t *testing.T) {
		stop := m.sender()
		time.Sleep(5 * time.Second)
		cut := m.waitServing(ctx, "")
		bootsBefore := m.boots(cut)
		at := time.Now()
		if err := m.l.Partition(cut); err != nil {
			t.Fatal(err)
		}
		owner := m.waitServing(ctx, cut)
		m.logMove(t, "partition of "+cut, owner, at)
		acked, failed := stop()
		t.Logf("%d messages acknowledged, %d attempts failed while the service moved", acked, failed)
		// Never two owners: the cut-off node let go of the VIP (or was
		// reset by its watchdog, which a full boot line shows) before
		// the new owner took it.
		started, ok := m.logTime(owner, at, vipStarted)
		if !ok {
			t.Errorf("%s's log shows no VIP start after the partition", owner)
		}
		if err := m.l.Heal(); err != nil {
			t.Fatal(err)
		}
		// The survivor, with quorum, fences the cut-off owner: its BMC
		// powers it off, and it stays off until powered on.
		fenced, wasFenced := m.poweredOff(cut, at)
		m.powerOn(ctx, cut)
		m.waitReplicated(ctx)
		// Checked only now: a node reset by its watchdog has booted again.
		// A reset node's daemon stops everything again when it starts:
		// that stop is no evidence, so a reset is looked for first.
		stopped, stoppedOK := m.logTime(cut, at, vipStopped)
		switch {
		case stoppedOK && stopped.Before(started):
			t.Logf("%s stopped the VIP %.1f s before %s started it", cut, started.Sub(stopped).Seconds(), owner)
		case wasFenced && fenced.Before(started):
			t.Logf("%s was powered off by its BMC %.1f s before %s started the VIP", cut, started.Sub(fenced).Seconds(), owner)
		case !wasFenced && m.boots(cut) > bootsBefore:
			t.Logf("%s was reset (its watchdog) before it logged stopping the VIP", cut)
		default:
			t.Errorf("%s neither stopped the VIP (%v at %s), nor was fenced (%v at %s) or reset before %s started it at %s", cut,
				stoppedOK, stopped.Format(time.StampMilli), wasFenced, fenced.Format(time.StampMilli), owner, started.Format(time.StampMilli))
		}
		if wasFenced {
			t.Logf("%s fenced %s %.1f s after the partition", owner, cut, fenced.Sub(at).Seconds())
		}
		m.checkAllReadable(ctx)
		if s, err := m.status(ctx); err != nil || s.Owner != owner {
			t.Errorf("after heal the owner is %v (%v), want %s to keep the group", s, err, owner)
		}
	})

	t.Run("replication link cut", func(t *testing.T) {
		stop := m.sender()
		time.Sleep(3 * time.Second)
		owner := m.waitServing(ctx, "")
		peer := otherDataNode(owner)
		at := time.Now()
		if err := m.l.CutReplication(); err != nil {
			t.Fatal(err)
		}
		// DRBD on the owner loses its peer with writes in flight, freezes
		// I/O and runs its fence-peer handler, which asks the daemon to
		// outdate the peer: a record in etcd that keeps the peer from
		// promoting until it has resynced. Then the owner writes on.
		c, cancelCut := context.WithTimeout(ctx, 3*time.Minute)
		m.retry(c, "the owner's fence-peer handler outdating "+peer, func(ctx context.Context) error {
			if _, ok := m.logTime(owner, at, peerOutdated); !ok {
				return fmt.Errorf("no %q in %s's log", peerOutdated, owner)
			}
			rs, err := m.replication(ctx)
			if err != nil {
				return err
			}
			if !slices.Equal(rs.Outdated, []string{peer}) {
				return fmt.Errorf("outdated %v, want [%s]", rs.Outdated, peer)
			}
			return nil
		})
		cancelCut()
		outdated, _ := m.logTime(owner, at, peerOutdated)
		t.Logf("%s outdated %s %.1f s after the replication link was cut", owner, peer, outdated.Sub(at).Seconds())
		time.Sleep(10 * time.Second) // mail on, the peer outdated
		if s, err := m.status(ctx); err != nil || s.Owner != owner {
			t.Errorf("with the replication link cut the owner is %v (%v), want %s to keep the group", s, err, owner)
		}
		m.noFence(t, at, "with only the replication link cut")
		if err := m.l.Heal(); err != nil {
			t.Fatal(err)
		}
		oos := m.waitReplicated(ctx)
		t.Logf("resync after the cut: at most %d KiB out of sync seen", oos)
		// The resync's end (after-resync-target on the peer) clears the
		// record.
		m.retry(ctx, "the outdated record cleared", func(ctx context.Context) error {
			if _, ok := m.logTime(peer, at, outdatedCleared); !ok {
				return fmt.Errorf("no %q in %s's log", outdatedCleared, peer)
			}
			out, err := m.run(ctx, "replication", "status")
			if err != nil {
				return err
			}
			if strings.Contains(string(out), "Outdated") {
				return fmt.Errorf("replication status:\n%s", out)
			}
			return nil
		})
		acked, failed := stop()
		t.Logf("%d messages acknowledged, %d attempts failed with the replication link cut", acked, failed)
		if acked == 0 {
			t.Errorf("no message acknowledged while the replication link was cut: the owner's writes stayed frozen")
		}
		m.checkAllReadable(ctx)
	})

	t.Run("arbitrator down", func(t *testing.T) {
		stop := m.sender()
		time.Sleep(3 * time.Second)
		owner := m.waitServing(ctx, "")
		peer := otherDataNode(owner)
		arbiter := lab.Nodes[2].Name
		at := time.Now()
		if err := m.l.Kill(arbiter); err != nil {
			t.Fatal(err)
		}
		// The data nodes are two of three: quorum stands, the owner keeps
		// renewing, nobody fences or takes over. Asked of the peer, since
		// tandemctl's usual endpoint is the arbiter.
		time.Sleep(3 * lab.LeaseTTL)
		m.retry(ctx, "the peer's status with the arbitrator down", func(ctx context.Context) error {
			s, err := m.statusAt(ctx, peer)
			if err != nil {
				return err
			}
			if !s.Quorum || s.Owner != owner {
				return fmt.Errorf("quorum %v, owner %q, want %s", s.Quorum, s.Owner, owner)
			}
			return nil
		})
		m.noFence(t, at, "with only the arbitrator down")
		if _, ok := m.logTime(peer, at, leaseAcquired); ok {
			t.Errorf("%s took the group's lease while only the arbitrator was down", peer)
		}
		if err := m.l.Boot(arbiter); err != nil {
			t.Fatal(err)
		}
		c, cancelBoot := context.WithTimeout(ctx, bootLimit)
		defer cancelBoot()
		if err := m.l.WaitReady(c, arbiter); err != nil {
			t.Fatal(err)
		}
		m.waitVoting(ctx)
		acked, failed := stop()
		t.Logf("%d messages acknowledged, %d attempts failed with the arbitrator down and booting again", acked, failed)
		if s, err := m.status(ctx); err != nil || s.Owner != owner {
			t.Errorf("after the arbitrator's return the owner is %v (%v), want %s to keep the group", s, err, owner)
		}
		m.checkAllReadable(ctx)
	})

	t.Run("standby and online", func(t *testing.T) {
		stop := m.sender()
		time.Sleep(3 * time.Second)
		from := m.waitServing(ctx, "")
		at := time.Now()
		if _, err := m.run(ctx, "node", "standby", from); err != nil {
			t.Fatal(err)
		}
		owner := m.waitServing(ctx, from)
		m.logMove(t, "standby of "+from, owner, at)
		if _, err := m.run(ctx, "node", "online", from); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		acked, failed := stop()
		t.Logf("%d messages acknowledged, %d attempts failed while the service moved", acked, failed)
		m.checkAllReadable(ctx)
		m.waitReplicated(ctx)
	})

	t.Run("both data nodes power-cycled", func(t *testing.T) {
		for _, n := range []string{"data-a", "data-b"} {
			if err := m.l.Reboot(n); err != nil {
				t.Fatal(err)
			}
		}
		c, cancel := context.WithTimeout(ctx, bootLimit)
		defer cancel()
		if err := m.l.WaitReady(c, "data-a", "data-b"); err != nil {
			t.Fatal(err)
		}
		m.waitServing(ctx, "")
		m.checkAllReadable(ctx)
		m.waitReplicated(ctx)
	})
}

// otherDataNode is the data node that is not name.
func otherDataNode(name string) string {
	if name == lab.Nodes[0].Name {
		return lab.Nodes[1].Name
	}
	return lab.Nodes[0].Name
}

// noFence fails t if a data node's log shows a fence since at.
func (m *mailLab) noFence(t testing.TB, at time.Time, while string) {
	t.Helper()
	for _, n := range []string{lab.Nodes[0].Name, lab.Nodes[1].Name} {
		if when, ok := m.logTime(n, at, fenceConfirmed); ok {
			t.Errorf("%s fenced its peer at %s %s", n, when.Format(time.StampMilli), while)
		}
	}
}

// submit sends as the mail user with swaks over submission (587,
// STARTTLS and AUTH) and submissions (465, TLS and AUTH) to itself, and
// sees the VIP refuse to relay for anyone else. The submitted messages
// join those checkAllReadable looks for.
func (m *mailLab) submit(ctx context.Context) {
	m.t.Helper()
	auth := []string{"--auth", "PLAIN", "--auth-user", m.seed.MailUser, "--auth-password", m.seed.MailPassword,
		"--from", m.seed.MailUser, "--to", m.seed.MailUser, "--server", lab.VIP.String(), "--timeout", "60"}
	for _, c := range []struct{ port, tls string }{{"587", "--tls"}, {"465", "--tls-on-connect"}} {
		id := fmt.Sprintf("<submission-%s.%d@lab-host>", c.port, time.Now().UnixNano())
		args := append([]string{"--port", c.port, c.tls, "--header", "Message-Id: " + id}, auth...)
		out, err := m.l.HostCommand(ctx, "swaks", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "250 2.0.0 Ok: queued") {
			m.t.Fatalf("swaks on %s: %v\n%s", c.port, err, out)
		}
		m.mu.Lock()
		m.acked = append(m.acked, id)
		m.mu.Unlock()
		if c.port == "587" {
			m.checkSigned(ctx, id)
		}
	}
	out, err := m.l.HostCommand(ctx, "swaks", "--server", lab.VIP.String(), "--port", "25", "--timeout", "60",
		"--from", "someone@example.org", "--to", "someone@example.net").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Relay access denied") {
		m.t.Errorf("swaks relaying through the VIP without AUTH: %v, want Relay access denied\n%s", err, out)
	}
}

// checkSigned reads the message with Message-ID id from the mail user's
// mailbox (IMAPS on the VIP), byte for byte, and checks its DKIM signature
// with Debian's python3-dkim against the TXT record that data-a's
// tandem-dns answers for the name tandemctl mail dkim show gives.
func (m *mailLab) checkSigned(ctx context.Context, id string) {
	m.t.Helper()
	out, err := m.run(ctx, "mail", "dkim", "show", "-json", lab.ClusterDomain)
	var dk cluster.MailDKIM
	if err == nil {
		err = json.Unmarshal(out, &dk)
	}
	if err != nil {
		m.t.Fatalf("mail dkim show: %v\n%s", err, out)
	}
	var txt string
	m.retry(ctx, "tandem-dns answering the DKIM record "+dk.Name, func(ctx context.Context) error {
		txt, err = m.lookupTXT(ctx, lab.Nodes[0].Addr.String(), dk.Name)
		return err
	})
	var msg []byte
	m.retry(ctx, id+" in the mailbox", func(ctx context.Context) error {
		c, err := mailprobe.Login(ctx, mailprobe.TLSDial(m.l.Dial, m.tlsConfig()), vipIMAPS, m.seed.MailUser, m.seed.MailPassword)
		if err != nil {
			return err
		}
		defer c.Logout()
		if _, err := c.Select("INBOX"); err != nil {
			return err
		}
		seq, err := c.Search("Message-ID", id)
		if err != nil || len(seq) != 1 {
			return fmt.Errorf("search: %v, %v", seq, err)
		}
		msg, err = c.Fetch(seq[0])
		return err
	})
	file := filepath.Join(m.dir, "signed.eml")
	testenv.WriteFile(m.t, file, msg, 0o644)
	b, err := exec.CommandContext(ctx, "/usr/bin/python3", "../services/mail/testdata/dkim_verify.py", file, dk.Name, txt).CombinedOutput()
	if want := fmt.Sprintf("verified: d=%s s=%s", lab.ClusterDomain, dk.Selector); err != nil || !strings.Contains(string(b), want) {
		m.t.Errorf("dkim_verify.py against tandem-dns's record = %v, want %q\n%s\nthe message:\n%s", err, want, b, msg)
	}
}

// lookupTXT asks the tandem-dns at addr (over TCP, from the lab's
// namespace) for name's TXT record and returns its strings joined.
func (m *mailLab) lookupTXT(ctx context.Context, addr, name string) (string, error) {
	conn, err := m.l.Dial(ctx, "tcp", addr+":53")
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	dc := &dns.Conn{Conn: conn}
	q := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	if err := dc.WriteMsg(q); err != nil {
		return "", err
	}
	r, err := dc.ReadMsg()
	if err != nil {
		return "", err
	}
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			return strings.Join(t.Txt, ""), nil
		}
	}
	return "", fmt.Errorf("TXT %s: %s, no TXT record in the answer", name, dns.RcodeToString[r.Rcode])
}

// installCert installs a certificate of a CA of the admin's (not the
// cluster's mail CA) with tandemctl mail cert install and waits until
// IMAPS on the VIP serves it; from then on the IMAPS checks trust only
// that CA.
func (m *mailLab) installCert(ctx context.Context) {
	m.t.Helper()
	caCert, caKey, err := mailtls.NewCA("the admin's own")
	if err != nil {
		m.t.Fatal(err)
	}
	p, err := mailtls.Issue(caCert, caKey, []string{mailName})
	if err != nil {
		m.t.Fatal(err)
	}
	chain, key := filepath.Join(m.dir, "site.crt"), filepath.Join(m.dir, "site.key")
	testenv.WriteFile(m.t, chain, p.Chain, 0o644)
	testenv.WriteFile(m.t, key, p.Key, 0o600)
	if _, err := m.run(ctx, "mail", "cert", "install", chain, key); err != nil {
		m.t.Fatal(err)
	}
	out, err := m.run(ctx, "mail", "cert", "show")
	if err != nil || !strings.Contains(string(out), "source:   installed") || !strings.Contains(string(out), "issuer:   tandem mail CA the admin's own") {
		m.t.Errorf("mail cert show after install: %v\n%s", err, out)
	}
	cfg, err := trusting(caCert)
	if err != nil {
		m.t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	m.retry(c, "IMAPS on the VIP serving the installed certificate", func(ctx context.Context) error {
		conn, err := mailprobe.TLSDial(m.l.Dial, cfg)(ctx, "tcp", vipIMAPS)
		if err == nil {
			conn.Close()
		}
		return err
	})
	m.mu.Lock()
	m.imapTLS = cfg
	m.mu.Unlock()
}
