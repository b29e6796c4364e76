// Package ntp is the node's NTP client: it polls several servers, steps
// the clock once at boot when it is far off, slews it afterwards, and
// reports whether the clock is synchronised and by how much it was off.
// The cluster refuses leases to a node whose clock is not synchronised.
// The clock sits behind the Clock interface, so host tests never touch the
// host's clock.
package ntp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// Config is the service's settings.
type Config struct {
	// Servers are host or host:port (default port 123).
	Servers []string
	// StepThreshold: the first correction larger than this is stepped.
	StepThreshold time.Duration
	// PollInterval is the time between polls once synchronised.
	PollInterval time.Duration
	// MaxOffset: synchronised while the last offset is within it.
	MaxOffset time.Duration
	// Timeout bounds one query. Default 2s.
	Timeout time.Duration
	// Clock is disciplined; nil is SystemClock.
	Clock Clock
	// Dial opens the UDP connection to a server; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger names the component; nil discards.
	Logger *slog.Logger
}

// DefaultStatusPath is where tandem-time writes its Status on a node,
// and where the cluster daemon reads it.
const DefaultStatusPath = "/run/tandem/time/time.json"

// Status is what the service knows of the clock.
type Status struct {
	Synchronised bool          `json:"synchronised"`
	Offset       time.Duration `json:"offset"` // last measured, before correction
	Server       string        `json:"server,omitempty"`
	LastSync     time.Time     `json:"last_sync,omitzero"`
	Stepped      bool          `json:"stepped"` // the boot step happened
	Samples      []Sample      `json:"samples,omitempty"`
	Error        string        `json:"error,omitempty"`
}

func (s Status) String() string {
	if s.LastSync.IsZero() {
		return "unsynchronised: " + s.Error
	}
	state := "synchronised"
	if !s.Synchronised {
		state = "unsynchronised"
	}
	return fmt.Sprintf("%s, offset %v (%s)", state, s.Offset, s.Server)
}

// ErrNoServer is returned when no server gave a usable answer.
var ErrNoServer = errors.New("no NTP server answered")

// Service disciplines a clock. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status Status
}

// New returns a service.
func New(cfg Config) *Service {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: log}
}

// Status returns the latest status.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Poll queries every server, corrects the clock by the median offset
// (stepping only on the first sync, and only beyond StepThreshold) and
// returns the new status.
func (s *Service) Poll(ctx context.Context) (Status, error) {
	samples := s.queryAll(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Samples = samples
	if len(samples) == 0 {
		st.Error = ErrNoServer.Error()
		// Without answers the clock drifts: unsynchronised once the last
		// sync is older than three polls.
		if st.LastSync.IsZero() || s.cfg.Clock.Now().Sub(st.LastSync) > 3*s.cfg.PollInterval {
			st.Synchronised = false
		}
		s.status = st
		return st, ErrNoServer
	}
	best := median(samples)
	st.Offset, st.Server, st.Error = best.Offset, best.Server, ""
	if err := s.correct(&st, best.Offset); err != nil {
		st.Error = err.Error()
		st.Synchronised = false
		s.status = st
		return st, err
	}
	st.LastSync = s.cfg.Clock.Now()
	s.status = st
	return st, nil
}

func (s *Service) correct(st *Status, off time.Duration) error {
	first := st.LastSync.IsZero()
	if first && abs(off) > s.cfg.StepThreshold {
		if err := s.cfg.Clock.Step(off); err != nil {
			return err
		}
		st.Stepped, st.Synchronised = true, true
		s.log.Info("stepped clock", "by", off, "server", st.Server)
		return nil
	}
	if err := s.cfg.Clock.Slew(off); err != nil {
		return err
	}
	st.Synchronised = abs(off) <= s.cfg.MaxOffset || (first && abs(off) <= s.cfg.StepThreshold)
	s.log.Debug("slewing clock", "by", off, "server", st.Server)
	return nil
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// median returns the sample with the median offset (the lower middle one
// of an even count): one falseticker among three servers cannot move it.
func median(samples []Sample) Sample {
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b Sample) int { return int(a.Offset - b.Offset) })
	return s[(len(s)-1)/2]
}

func (s *Service) queryAll(ctx context.Context) []Sample {
	var (
		mu  sync.Mutex
		out []Sample
		wg  sync.WaitGroup
	)
	for _, srv := range s.cfg.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			smp, err := s.queryOne(ctx, srv)
			if err != nil {
				s.log.Warn("query", "server", srv, "err", err)
				return
			}
			mu.Lock()
			out = append(out, smp)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Sample) int { return cmpStr(a.Server, b.Server) })
	return out
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Service) queryOne(ctx context.Context, server string) (Sample, error) {
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(server, "123")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	conn, err := s.cfg.Dial(ctx, "udp", addr)
	if err != nil {
		return Sample{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	smp, err := query(ctx, conn, s.cfg.Clock.Now)
	if err != nil {
		return Sample{}, fmt.Errorf("query %s: %w", addr, err)
	}
	smp.Server = server
	return smp, nil
}

// Run polls until ctx ends: every 2 s until the first sync, then every
// PollInterval. Each status goes to report.
func (s *Service) Run(ctx context.Context, report func(Status)) error {
	for {
		st, err := s.Poll(ctx)
		report(st)
		wait := s.cfg.PollInterval
		if err != nil && st.LastSync.IsZero() {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
