package core

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestScenarios runs the scenario files in testdata/scenarios (etcd raft's
// datadriven format: a command, its input, "----", the output it must
// give; `go test -rewrite` rewrites the outputs). Two commands:
//
//	config node=a [role=arbitrator] [resources=(fs,vip,mail)] [threshold=2]
//	       [stickiness=100] [preferred=b score=50] [fencing] [timing=lab]
//
// starts a fresh core (the defaults are a data node running fs, vip, mail
// with threshold 2 and stickiness 100; timing=lab is the lab's 8 s lease);
//
//	run
//	MS EVENT
//
// feeds it one event per line at MS milliseconds, and prints for each the
// event, the actions it returned (->) and the status after it (=). The
// events are written as the trace prints them, with the times in ms:
// tick, poll failed, poll owner=a token=10 [released] [standby=N]
// [fail[N/R]=K] [move=N] [maintenance] [offline=N], acquired token=T
// sent=MS, acquire-failed err="...", renewed sent=MS, released,
// done stop|start R [err="..."], monitor-failed R err="...", fenced N
// ok=true|false, clock synced=true|false detail="...". A "#" starts a
// comment.
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		var c *Core
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "config":
				c = New(scenarioConfig(t, d))
				return "ok\n"
			case "run":
				if c == nil {
					d.Fatalf(t, "run before config")
				}
				out, err := runEvents(c, d.Input)
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				return out
			}
			d.Fatalf(t, "unknown command %q (want config or run)", d.Cmd)
			return ""
		})
	})
}

func scenarioConfig(t *testing.T, d *datadriven.TestData) Config {
	c := Config{Role: RoleData, Timing: DefaultTiming()}
	d.ScanArgs(t, "node", &c.Node)
	if d.HasArg("role") {
		var r string
		d.ScanArgs(t, "role", &r)
		c.Role = Role(r)
	}
	if c.Role == RoleData {
		c.Resources, c.MigrationThreshold, c.Stickiness = []string{"fs", "vip", "mail"}, 2, 100
	}
	if d.HasArg("resources") {
		c.Resources = nil
		d.ScanArgs(t, "resources", &c.Resources)
	}
	d.MaybeScanArgs(t, "threshold", &c.MigrationThreshold)
	d.MaybeScanArgs(t, "stickiness", &c.Stickiness)
	d.MaybeScanArgs(t, "preferred", &c.Preferred)
	d.MaybeScanArgs(t, "score", &c.PreferredScore)
	c.Fencing = d.HasArg("fencing")
	c.ClockGuard = d.HasArg("clockguard")
	if d.HasArg("timing") {
		var name string
		d.ScanArgs(t, "timing", &name)
		if name != "lab" {
			d.Fatalf(t, "timing=%s: want lab (or no timing= for the default)", name)
		}
		c.Timing = labTiming()
	}
	return c
}

// labTiming is what a lease of 8 s scales to (the lab's timings).
func labTiming() Timing {
	return Timing{LeaseTTL: 8 * time.Second, RenewInterval: time.Second, RenewRetries: 3,
		StopMargin: 8 * time.Second / 3, WatchdogTimeout: 4 * time.Second, TakeoverMargin: 8 * time.Second / 6}
}

// runEvents steps c through the events of input and returns the trace.
func runEvents(c *Core, input string) (string, error) {
	var b strings.Builder
	for n, line := range strings.Split(input, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := fields(line)
		if len(f) == 0 {
			continue
		}
		ms, err := strconv.Atoi(f[0])
		if err != nil {
			return "", fmt.Errorf("line %d: %q: want MS EVENT", n+1, line)
		}
		ev, err := parseEvent(f[1:])
		if err != nil {
			return "", fmt.Errorf("line %d: %q: %w", n+1, line, err)
		}
		at := t0(ms)
		fmt.Fprintf(&b, "%s %s\n", fmtT(at), ev.event())
		for _, a := range c.Step(at, ev) {
			fmt.Fprintf(&b, "  -> %s\n", a)
		}
		st := c.Status()
		fmt.Fprintf(&b, "  = %s held=%v", st.Phase, st.Held)
		if st.Reason != "" {
			fmt.Fprintf(&b, " reason=%q", st.Reason)
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

func t0(ms int) time.Time { return epoch.Add(time.Duration(ms) * time.Millisecond) }

// fields splits a line at spaces outside double quotes.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// parseEvent reads one event: its kind, then positional words and
// key=value pairs (values may be quoted).
func parseEvent(f []string) (Event, error) {
	if len(f) == 0 {
		return nil, fmt.Errorf("no event")
	}
	kind, pos, kv, err := splitArgs(f)
	if err != nil {
		return nil, err
	}
	want := func(n int, what string) error {
		if len(pos) != n {
			return fmt.Errorf("%s: want %s", kind, what)
		}
		return nil
	}
	ms := func(k string) (time.Time, error) {
		v, err := strconv.Atoi(kv[k])
		return t0(v), err
	}
	switch kind {
	case "tick":
		return Tick{}, want(0, "no arguments")
	case "released":
		return Released{}, want(0, "no arguments")
	case "poll":
		if len(pos) == 1 && pos[0] == "failed" {
			return Poll{OK: false}, nil
		}
		s, err := parseState(pos, kv)
		return Poll{OK: true, State: s}, err
	case "acquired":
		tok, err := strconv.ParseInt(kv["token"], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("acquired: token=%q: %w", kv["token"], err)
		}
		sent, err := ms("sent")
		return Acquired{Token: tok, SentAt: sent}, err
	case "acquire-failed":
		return AcquireFailed{Err: kv["err"]}, want(0, `err="..."`)
	case "renewed":
		sent, err := ms("sent")
		return Renewed{SentAt: sent}, err
	case "done":
		if err := want(2, "stop|start RESOURCE"); err != nil {
			return nil, err
		}
		if pos[0] != string(OpStart) && pos[0] != string(OpStop) {
			return nil, fmt.Errorf("done %s: want start or stop", pos[0])
		}
		return Done{Op: Op(pos[0]), Resource: pos[1], Err: kv["err"]}, nil
	case "monitor-failed":
		return MonitorFailed{Resource: first(pos), Err: kv["err"]}, want(1, `RESOURCE err="..."`)
	case "clock":
		ok, err := strconv.ParseBool(kv["synced"])
		if err != nil {
			return nil, fmt.Errorf("clock: synced=%q: %w", kv["synced"], err)
		}
		return Clock{Synced: ok, Detail: kv["detail"]}, want(0, `synced=BOOL detail="..."`)
	case "fenced":
		ok, err := strconv.ParseBool(kv["ok"])
		if err != nil {
			return nil, fmt.Errorf("fenced: ok=%q: %w", kv["ok"], err)
		}
		return Fenced{Node: first(pos), OK: ok}, want(1, "NODE ok=BOOL")
	}
	return nil, fmt.Errorf("unknown event %q", kind)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// splitArgs splits an event's words into its kind, the positional words
// and the key=value pairs (unquoted).
func splitArgs(f []string) (kind string, pos []string, kv map[string]string, err error) {
	kv = map[string]string{}
	for _, w := range f[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			pos = append(pos, w)
			continue
		}
		if strings.HasPrefix(v, `"`) {
			if v, err = strconv.Unquote(v); err != nil {
				return "", nil, nil, fmt.Errorf("%s: %w", w, err)
			}
		}
		if _, dup := kv[k]; dup {
			return "", nil, nil, fmt.Errorf("%s given twice", k)
		}
		kv[k] = v
	}
	return f[0], pos, kv, nil
}

// parseState reads a poll's cluster state as ClusterState.String prints
// it; both data nodes a and b are online unless offline= says otherwise.
func parseState(pos []string, kv map[string]string) (ClusterState, error) {
	s := ClusterState{Owner: kv["owner"], Online: map[string]bool{"a": true, "b": true}}
	var err error
	if s.Token, err = strconv.ParseInt(kv["token"], 10, 64); err != nil {
		return s, fmt.Errorf("poll: token=%q: %w", kv["token"], err)
	}
	for _, w := range pos {
		switch w {
		case "released":
			s.Released = true
		case "maintenance":
			s.Maintenance = true
		default:
			return s, fmt.Errorf("poll: unknown flag %q", w)
		}
	}
	for k, v := range kv {
		switch {
		case k == "owner" || k == "token":
		case k == "standby":
			s.Standby = map[string]bool{v: true}
		case k == "move":
			s.MoveTo = v
		case k == "offline":
			s.Online[v] = false
		case strings.HasPrefix(k, "fail[") && strings.HasSuffix(k, "]"):
			node, res, ok := strings.Cut(k[len("fail["):len(k)-1], "/")
			n, err := strconv.Atoi(v)
			if !ok || err != nil {
				return s, fmt.Errorf("poll: %s=%s: want fail[NODE/RESOURCE]=COUNT", k, v)
			}
			s.FailCounts = map[string]map[string]int{node: {res: n}}
		default:
			return s, fmt.Errorf("poll: unknown field %q", k)
		}
	}
	return s, nil
}
