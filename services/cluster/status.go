package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"tandem/services/cluster/core"
)

// Status is a node's view of the cluster, as the API serves it.
type Status struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	Role    string `json:"role"`
	// Quorum says this node can read the cluster state (a majority of
	// members answers).
	Quorum bool `json:"quorum"`
	// Phase, Held, Token: the group on this node.
	Phase string `json:"phase"`
	Held  bool   `json:"held"`
	Token int64  `json:"token,omitempty"`
	// Reason says why this node does not run the group (or what it waits for).
	Reason      string           `json:"reason,omitempty"`
	Owner       string           `json:"owner,omitempty"`
	OwnerToken  int64            `json:"owner_token,omitempty"`
	MoveTo      string           `json:"move_to,omitempty"`
	Maintenance bool             `json:"maintenance,omitempty"`
	Nodes       []NodeStatus     `json:"nodes"`
	Group       []ResourceStatus `json:"group"`
	// StateAge is how old the cluster part of this view is.
	StateAge string `json:"state_age,omitempty"`
	// ReadsFailing says the last reads of the cluster state failed: the
	// view is the last one read, and Quorum turns false once no read has
	// succeeded for half a lease (docs/cluster.md, "Timing rules").
	ReadsFailing bool `json:"reads_failing,omitempty"`
	// Memory is the queried node's memory (from /proc/meminfo), in API
	// answers only: in status.json it would change, and be rewritten, on
	// every step.
	Memory *Memory `json:"memory,omitempty"`
	// MailCert is the mail service's certificate (API answers only):
	// its expiry is on the status screen.
	MailCert *MailCert `json:"mail_cert,omitempty"`
	// Fence are the last checks of the fence devices (API answers only).
	Fence []FenceCheck `json:"fence,omitempty"`
	Time  time.Time    `json:"time"`
}

// NodeStatus is one member.
type NodeStatus struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Address string `json:"address"`
	Online  bool   `json:"online"`
	Standby bool   `json:"standby,omitempty"`
	// Learner: an etcd member that has joined but does not vote yet
	// (it is catching up); it does not count towards quorum.
	Learner bool `json:"learner,omitempty"`
}

// ResourceStatus is one resource of the group.
type ResourceStatus struct {
	Name  string `json:"name"`
	Agent string `json:"agent"`
	// States per node that reported one ("started", "stopped", ...).
	States     map[string]string `json:"states"`
	FailCounts map[string]int    `json:"fail_counts,omitempty"`
}

// status assembles this node's view.
func (d *Daemon) status() Status {
	d.mu.Lock()
	v, cs, learners := d.view, d.coreView, d.learners
	d.mu.Unlock()
	s := Status{
		Cluster: d.cf.Cluster, Node: d.cfg.Node, Role: string(d.cfg.Role), Quorum: cs.Quorum,
		Phase: string(cs.Phase), Held: cs.Held, Token: cs.Token, Reason: cs.Reason, Time: time.Now(),
	}
	if !v.at.IsZero() {
		s.StateAge = time.Since(v.at).Round(100 * time.Millisecond).String()
	}
	s.ReadsFailing = !v.failAt.IsZero()
	st := v.state
	if !st.Released {
		s.Owner, s.OwnerToken = st.Owner, st.Token
	}
	s.MoveTo, s.Maintenance = st.MoveTo, st.Maintenance
	for _, m := range v.members {
		s.Nodes = append(s.Nodes, NodeStatus{Name: m.Name, Role: m.Role, Address: m.Address,
			Online: st.Online[m.Name] && v.ok || m.Name == d.cfg.Node, Standby: st.Standby[m.Name],
			Learner: learners[m.Name] || learners[m.PeerURL()]})
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Name < s.Nodes[j].Name })
	if len(s.Nodes) == 0 {
		s.Nodes = []NodeStatus{{Name: d.cfg.Node, Role: string(d.cfg.Role), Address: d.cfg.Address, Online: true}}
	}
	// An offline node's last published states say nothing about now.
	live := map[string]map[string]string{}
	for n, m := range v.rstates {
		if st.Online[n] {
			live[n] = m
		}
	}
	for _, rc := range d.cfg.Group {
		rs := ResourceStatus{Name: rc.Name, Agent: rc.Agent, States: map[string]string{}, FailCounts: map[string]int{}}
		for n, m := range live {
			if x, ok := m[rc.Name]; ok && n != d.cfg.Node {
				rs.States[n] = x
			}
		}
		rs.States[d.cfg.Node] = cs.Resources[rc.Name]
		for n, fc := range st.FailCounts {
			if fc[rc.Name] > 0 {
				rs.FailCounts[n] = fc[rc.Name]
			}
		}
		s.Group = append(s.Group, rs)
	}
	if s.Group == nil && v.rstates != nil {
		s.Group = groupFromPeers(live, st.FailCounts)
	}
	return s
}

// groupFromPeers lets the arbitrator, which has no group config, show the
// group as the data nodes report it.
func groupFromPeers(rstates map[string]map[string]string, fails map[string]map[string]int) []ResourceStatus {
	byName := map[string]*ResourceStatus{}
	var names []string
	for n, m := range rstates {
		for r, x := range m {
			rs := byName[r]
			if rs == nil {
				rs = &ResourceStatus{Name: r, States: map[string]string{}, FailCounts: map[string]int{}}
				byName[r] = rs
				names = append(names, r)
			}
			rs.States[n] = x
			if f := fails[n][r]; f > 0 {
				rs.FailCounts[n] = f
			}
		}
	}
	sort.Strings(names)
	var out []ResourceStatus
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out
}

// writeStatus keeps status.json current and publishes this node's
// resource states to etcd when they change.
func (d *Daemon) writeStatus() {
	d.writeStatusFile()
	if d.cfg.Role != core.RoleData {
		return
	}
	rb, _ := json.Marshal(d.core.Status().Resources) // main loop only
	// Publish on change, and again every few seconds in case a put was
	// lost while there was no quorum.
	if string(rb) != d.rstatePut || time.Since(d.rstateAt) > 3*time.Second {
		d.rstatePut, d.rstateAt = string(rb), time.Now()
		go func() {
			c, cancel := context.WithTimeout(context.Background(), d.cfg.requestTimeout())
			defer cancel()
			_, _ = d.cli.Put(c, prefixRState+d.cfg.Node, string(rb)) // a lost put is made again within 3 s
		}()
	}
}

func (d *Daemon) writeStatusFile() {
	s := d.status()
	s.Time, s.StateAge, s.ReadsFailing = time.Time{}, "", false
	b, _ := json.MarshalIndent(s, "", "  ")
	if string(b) != string(d.statusRaw) {
		d.statusRaw = b
		if err := d.st.Write("status.json", b); err != nil {
			d.log.Error("write status", "err", err)
		}
	}
}

// FormatStatus writes s the way crm_mon reads.
func FormatStatus(w io.Writer, s Status) {
	fmt.Fprintf(w, "Cluster Summary:\n")
	fmt.Fprintf(w, "  * Cluster: %s, queried on %s (%s)\n", s.Cluster, s.Node, s.Role)
	if s.Quorum {
		on := 0
		var learners []string
		for _, n := range s.Nodes {
			switch {
			case n.Learner:
				learners = append(learners, n.Name)
			case n.Online:
				on++
			}
		}
		stale := ""
		if s.ReadsFailing {
			stale = fmt.Sprintf("; as read %s ago, reads failing since", s.StateAge)
		}
		if len(learners) == 0 {
			fmt.Fprintf(w, "  * Quorum: yes (%d of %d members online%s)\n", on, len(s.Nodes), stale)
		} else {
			fmt.Fprintf(w, "  * Quorum: yes (%d of %d members online and voting; not voting yet, catching up: %s%s)\n",
				on, len(s.Nodes), strings.Join(learners, " "), stale)
		}
	} else {
		fmt.Fprintf(w, "  * Quorum: NO (this node cannot reach a majority of the cluster; what follows may be stale)\n")
	}
	switch {
	case s.Owner != "" && !s.Quorum:
		fmt.Fprintf(w, "  * Group owner: %s (last known, fencing token %d)\n", s.Owner, s.OwnerToken)
	case s.Owner != "":
		fmt.Fprintf(w, "  * Group owner: %s (fencing token %d)\n", s.Owner, s.OwnerToken)
	default:
		fmt.Fprintf(w, "  * Group owner: none\n")
	}
	if s.Maintenance {
		fmt.Fprintf(w, "  * *** Resource management is DISABLED: maintenance mode ***\n")
	}
	if s.MoveTo != "" {
		fmt.Fprintf(w, "  * Move requested to: %s\n", s.MoveTo)
	}
	if mc := s.MailCert; mc != nil {
		left := mc.Info.NotAfter.Sub(s.Time)
		warn := ""
		if left < 14*24*time.Hour {
			warn = " *** renew or install a new one ***"
		}
		fmt.Fprintf(w, "  * Mail certificate: %s (%s), expires %s (in %d days)%s\n",
			mc.Info.Subject, mc.Source, mc.Info.NotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24), warn)
	}
	for _, fc := range s.Fence {
		ago := s.Time.Sub(fc.At).Round(time.Second)
		if fc.Error != "" {
			fmt.Fprintf(w, "  * Fence device of %s (on %s): *** check FAILED %v ago: %s ***\n", fc.Target, fc.By, ago, fc.Error)
		} else {
			fmt.Fprintf(w, "  * Fence device of %s (on %s): answers, power %s, checked %v ago\n", fc.Target, fc.By, fc.Power, ago)
		}
	}
	fmt.Fprintf(w, "\nNode List:\n")
	lists := []struct {
		label string
		f     func(NodeStatus) bool
	}{
		{"Online", func(n NodeStatus) bool { return n.Online && !n.Standby && n.Role == "data" }},
		{"Standby", func(n NodeStatus) bool { return n.Online && n.Standby }},
		{"Arbitrator", func(n NodeStatus) bool { return n.Online && n.Role != "data" }},
		{"OFFLINE", func(n NodeStatus) bool { return !n.Online }},
	}
	for _, l := range lists {
		var names []string
		for _, n := range s.Nodes {
			if l.f(n) && n.Learner && n.Online {
				names = append(names, n.Name+"(learner)")
			} else if l.f(n) {
				names = append(names, n.Name)
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(w, "  * %s: [ %s ]\n", l.label, strings.Join(names, " "))
		}
	}
	fmt.Fprintf(w, "\nFull List of Resources:\n")
	if len(s.Group) == 0 {
		fmt.Fprintf(w, "  * No resources\n")
	} else {
		fmt.Fprintf(w, "  * Resource Group: group:\n")
	}
	for _, r := range s.Group {
		fmt.Fprintf(w, "    * %-12s (%s):\t%s\n", r.Name, r.Agent, resourceLine(r))
	}
	var fails []string
	for _, r := range s.Group {
		for _, n := range sortedNames(r.FailCounts) {
			fails = append(fails, fmt.Sprintf("  * Node: %s:\n    * %s: fail-count=%d\n", n, r.Name, r.FailCounts[n]))
		}
	}
	if len(fails) > 0 {
		fmt.Fprintf(w, "\nMigration Summary:\n%s", strings.Join(fails, ""))
	}
	fmt.Fprintf(w, "\nThis node (%s): %s", s.Node, s.Phase)
	if s.Held {
		fmt.Fprintf(w, ", holds the lease (token %d)", s.Token)
	}
	if s.Reason != "" {
		fmt.Fprintf(w, ": %s", s.Reason)
	}
	fmt.Fprintln(w)
	if m := s.Memory; m != nil {
		fmt.Fprintf(w, "  memory: %d MiB used of %d MiB\n", m.UsedMiB(), m.TotalKiB>>10)
	}
}

// Memory is a node's memory as the kernel counts it.
type Memory struct {
	TotalKiB     uint64 `json:"total_kib"`
	AvailableKiB uint64 `json:"available_kib"`
}

// UsedMiB is what the node cannot give back: total less available.
func (m Memory) UsedMiB() uint64 { return (m.TotalKiB - m.AvailableKiB) >> 10 }

// readMemory reads MemTotal and MemAvailable; nil if it cannot.
func readMemory(path string) *Memory {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			m.TotalKiB = v
		case "MemAvailable:":
			m.AvailableKiB = v
		}
	}
	if m.TotalKiB == 0 || m.AvailableKiB > m.TotalKiB {
		return nil
	}
	return &m
}

func resourceLine(r ResourceStatus) string {
	var started, other []string
	for _, n := range sortedNames(r.States) {
		switch st := r.States[n]; st {
		case "started":
			started = append(started, n)
		case "stopped", "unknown", "":
		default:
			other = append(other, fmt.Sprintf("%s on %s", st, n))
		}
	}
	var parts []string
	if len(started) > 0 {
		parts = append(parts, "Started "+strings.Join(started, " "))
	}
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "Stopped"
	}
	return strings.Join(parts, ", ")
}

func sortedNames[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
