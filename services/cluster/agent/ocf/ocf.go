// Package ocf runs OCF resource agents (the Open Cluster Framework
// contract Pacemaker uses) unchanged: OCF_ROOT and OCF_RESKEY_* in the
// environment, the action as the only argument, exit codes mapped to
// results, meta-data parsed for parameters and default timeouts.
package ocf

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultRoot is where Debian's resource-agents package installs agents.
const DefaultRoot = "/usr/lib/ocf"

// ExitCode is an OCF exit code.
type ExitCode int

// The OCF exit codes.
const (
	Success          ExitCode = 0
	ErrGeneric       ExitCode = 1
	ErrArgs          ExitCode = 2
	ErrUnimplemented ExitCode = 3
	ErrPerm          ExitCode = 4
	ErrInstalled     ExitCode = 5
	ErrConfigured    ExitCode = 6
	NotRunning       ExitCode = 7
	RunningPromoted  ExitCode = 8
	FailedPromoted   ExitCode = 9
)

var codeNames = map[ExitCode]string{
	Success: "OCF_SUCCESS", ErrGeneric: "OCF_ERR_GENERIC", ErrArgs: "OCF_ERR_ARGS",
	ErrUnimplemented: "OCF_ERR_UNIMPLEMENTED", ErrPerm: "OCF_ERR_PERM", ErrInstalled: "OCF_ERR_INSTALLED",
	ErrConfigured: "OCF_ERR_CONFIGURED", NotRunning: "OCF_NOT_RUNNING",
	RunningPromoted: "OCF_RUNNING_PROMOTED", FailedPromoted: "OCF_FAILED_PROMOTED",
}

func (c ExitCode) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("exit %d", int(c))
}

// Sentinel errors.
var (
	ErrNotRunning = errors.New("not running")
	ErrTimeout    = errors.New("action timed out")
	// ErrOutputTooLong is meta-data output longer than MaxOutput, which
	// cannot be parsed once cut.
	ErrOutputTooLong = errors.New("output too long")
)

// ResultError is a failed action with its exit code and output.
type ResultError struct {
	Action string
	Code   ExitCode
	Output string
}

func (e *ResultError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 300 {
		out = out[len(out)-300:]
	}
	if out != "" {
		return fmt.Sprintf("%s: %s: %s", e.Action, e.Code, out)
	}
	return fmt.Sprintf("%s: %s", e.Action, e.Code)
}

// Is makes errors.Is(err, ErrNotRunning) true for OCF_NOT_RUNNING.
func (e *ResultError) Is(target error) bool { return target == ErrNotRunning && e.Code == NotRunning }

// Agent is one configured resource of an OCF agent.
type Agent struct {
	// Instance is the resource's name (OCF_RESOURCE_INSTANCE).
	Instance string
	// Root is OCF_ROOT; empty means DefaultRoot.
	Root string
	// Provider and Type select Root/resource.d/Provider/Type.
	Provider, Type string
	// Params become OCF_RESKEY_<name>.
	Params map[string]string
	// Timeouts per action; missing ones come from the agent's meta-data
	// (see LoadDefaults), else 20s.
	Timeouts map[string]time.Duration
	// Prefix, if set, is prepended to the command line (e.g. ip netns exec NS).
	Prefix []string
}

// Parse splits "ocf:provider:type".
func Parse(spec string) (provider, typ string, err error) {
	f := strings.Split(spec, ":")
	if len(f) != 3 || f[0] != "ocf" || f[1] == "" || f[2] == "" {
		return "", "", fmt.Errorf("agent %q: want ocf:PROVIDER:TYPE", spec)
	}
	return f[1], f[2], nil
}

func (a *Agent) root() string {
	if a.Root != "" {
		return a.Root
	}
	return DefaultRoot
}

// Path is the agent's executable.
func (a *Agent) Path() string {
	return filepath.Join(a.root(), "resource.d", a.Provider, a.Type)
}

func (a *Agent) timeout(action string) time.Duration {
	if d, ok := a.Timeouts[action]; ok && d > 0 {
		return d
	}
	return 20 * time.Second
}

// Run runs one action and returns its exit code and combined output,
// bounded to MaxOutput bytes (the first and the last half, with a marker
// saying how many bytes between them were dropped). A timeout kills the
// agent's whole process group and returns ErrTimeout.
func (a *Agent) Run(ctx context.Context, action string) (ExitCode, string, error) {
	code, out, err := a.run(ctx, action)
	return code, out.String(), err
}

// run is Run with the output as captured.
func (a *Agent) run(ctx context.Context, action string) (ExitCode, *capped, error) {
	out := newCapped(MaxOutput)
	if _, err := os.Stat(a.Path()); err != nil {
		return ErrInstalled, out, fmt.Errorf("agent %s: %w", a.Path(), err)
	}
	d := a.timeout(action)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	argv := append(append([]string{}, a.Prefix...), a.Path(), action)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = a.env(action, d)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return ErrGeneric, out, fmt.Errorf("%s %s: %w", a.Instance, action, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		return exitCode(err), out, nil
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		//lint:ignore S1005 the dropped error is named for errcheck: it is the kill's
		_ = <-waited
		return ErrGeneric, out, fmt.Errorf("%s %s after %v: %w", a.Instance, action, d, ErrTimeout)
	}
}

func exitCode(err error) ExitCode {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return Success
	case errors.As(err, &ee):
		if ee.ExitCode() < 0 {
			return ErrGeneric
		}
		return ExitCode(ee.ExitCode())
	}
	return ErrGeneric
}

func (a *Agent) env(action string, d time.Duration) []string {
	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"OCF_ROOT=" + a.root(),
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=1",
		"OCF_RESOURCE_INSTANCE=" + a.Instance,
		"OCF_RESOURCE_PROVIDER=" + a.Provider,
		"OCF_RESOURCE_TYPE=" + a.Type,
		fmt.Sprintf("OCF_RESKEY_CRM_meta_timeout=%d", d.Milliseconds()),
	}
	for k, v := range a.Params {
		env = append(env, "OCF_RESKEY_"+k+"="+v)
	}
	return env
}

// do runs action and turns anything but OCF_SUCCESS into an error.
func (a *Agent) do(ctx context.Context, action string) error {
	code, out, err := a.Run(ctx, action)
	if err != nil {
		return err
	}
	if code != Success {
		return &ResultError{Action: a.Instance + " " + action, Code: code, Output: out}
	}
	return nil
}

// Start runs the start action.
func (a *Agent) Start(ctx context.Context) error { return a.do(ctx, "start") }

// Stop runs the stop action (OCF: stopping a stopped resource succeeds).
func (a *Agent) Stop(ctx context.Context) error { return a.do(ctx, "stop") }

// Monitor runs monitor: nil when running, an error matching ErrNotRunning
// when cleanly stopped, another error on failure.
func (a *Agent) Monitor(ctx context.Context) error { return a.do(ctx, "monitor") }

// Validate runs validate-all.
func (a *Agent) Validate(ctx context.Context) error { return a.do(ctx, "validate-all") }

// MetaData is the parsed output of the meta-data action.
type MetaData struct {
	Name       string      `xml:"name,attr"`
	Version    string      `xml:"version"`
	ShortDesc  string      `xml:"shortdesc"`
	Parameters []Parameter `xml:"parameters>parameter"`
	Actions    []Action    `xml:"actions>action"`
}

// Parameter is one parameter an agent takes.
type Parameter struct {
	Name     string `xml:"name,attr"`
	Required bool   `xml:"required,attr"`
	Unique   bool   `xml:"unique,attr"`
	Content  struct {
		Type    string `xml:"type,attr"`
		Default string `xml:"default,attr"`
	} `xml:"content"`
}

// Action is one action an agent advertises, with its suggested timeout.
type Action struct {
	Name     string `xml:"name,attr"`
	Timeout  string `xml:"timeout,attr"`
	Interval string `xml:"interval,attr"`
	Depth    string `xml:"depth,attr"`
}

// ParseMetaData parses meta-data XML.
func ParseMetaData(b []byte) (*MetaData, error) {
	var md MetaData
	if err := xml.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("parse meta-data: %w", err)
	}
	if md.Name == "" {
		return nil, errors.New("parse meta-data: no resource-agent name")
	}
	return &md, nil
}

// MetaData runs the meta-data action and parses it.
func (a *Agent) MetaData(ctx context.Context) (*MetaData, error) {
	code, out, err := a.run(ctx, "meta-data")
	if err != nil {
		return nil, err
	}
	if code != Success {
		return nil, &ResultError{Action: a.Instance + " meta-data", Code: code, Output: out.String()}
	}
	if d := out.dropped(); d > 0 {
		return nil, fmt.Errorf("%s meta-data: output over %d bytes (%d dropped): %w", a.Path(), MaxOutput, d, ErrOutputTooLong)
	}
	md, err := ParseMetaData([]byte(out.String()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.Path(), err)
	}
	return md, nil
}

// ParseDuration reads an OCF time ("20s", "20", "2m", "100ms").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if s[len(s)-1] >= '0' && s[len(s)-1] <= '9' {
		s += "s"
	}
	if strings.HasSuffix(s, "min") {
		s = strings.TrimSuffix(s, "in")
	}
	return time.ParseDuration(s)
}

// LoadDefaults fills missing Timeouts from meta-data and checks that every
// required parameter is set.
func (a *Agent) LoadDefaults(md *MetaData) error {
	if a.Timeouts == nil {
		a.Timeouts = map[string]time.Duration{}
	}
	for _, act := range md.Actions {
		if _, ok := a.Timeouts[act.Name]; ok || act.Timeout == "" {
			continue
		}
		d, err := ParseDuration(act.Timeout)
		if err != nil {
			return fmt.Errorf("%s meta-data: action %s timeout %q: %w", a.Type, act.Name, act.Timeout, err)
		}
		a.Timeouts[act.Name] = d
	}
	for _, p := range md.Parameters {
		if _, ok := a.Params[p.Name]; p.Required && !ok {
			return fmt.Errorf("%s: required parameter %s is not set", a.Instance, p.Name)
		}
	}
	return nil
}
