// Package network brings a node's interfaces to the state its node config
// describes, over rtnetlink: physical links matched by name or MAC, active-
// backup bonds, VLANs, MTU, static IPv4/IPv6 addresses and routes, DHCPv4
// leases (requested, renewed, released), the host name, /etc/hosts and
// resolv.conf. Apply is idempotent: applying the same config twice changes
// nothing the second time. State reports each link.
package network

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"tandem/internal/nodeconfig"
)

// ErrNoLink is returned when a configured link does not exist.
var ErrNoLink = errors.New("no such link")

// Paths are the files the service writes; tests point them at a temporary
// directory so they never touch the host's.
type Paths struct {
	Hosts    string // /etc/hosts
	Resolv   string // /etc/resolv.conf
	Hostname string // /etc/hostname
}

// DefaultPaths are the node's real files.
func DefaultPaths() Paths {
	return Paths{Hosts: "/etc/hosts", Resolv: "/etc/resolv.conf", Hostname: "/etc/hostname"}
}

// Hostnamer reads and sets the kernel's host name.
type Hostnamer interface {
	Hostname() (string, error)
	SetHostname(name string) error
}

// KernelHostname is the real Hostnamer (needs CAP_SYS_ADMIN to set).
type KernelHostname struct{}

// Hostname returns the kernel's host name.
func (KernelHostname) Hostname() (string, error) { return os.Hostname() }

// SetHostname sets the kernel's host name.
func (KernelHostname) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }

// Options are what the service needs from the OS.
type Options struct {
	// Paths are the files written; zero fields take DefaultPaths.
	Paths Paths
	// Hostname sets the host name; nil is KernelHostname.
	Hostname Hostnamer
	// Logger names the component; nil discards.
	Logger *slog.Logger
	// Conn is the rtnetlink connection; nil dials one.
	Conn *rtnetlink.Conn
}

// Service applies network configuration. Its methods are safe for
// concurrent use.
type Service struct {
	paths Paths
	host  Hostnamer
	log   *slog.Logger
	conn  *rtnetlink.Conn
	owned bool

	mu     sync.Mutex
	cfg    *nodeconfig.Config
	leases map[string]*Lease // DHCP leases by interface, for resolv.conf
}

// New returns a service; Close releases its netlink connection.
func New(opts Options) (*Service, error) {
	p, d := opts.Paths, DefaultPaths()
	if p.Hosts == "" {
		p.Hosts = d.Hosts
	}
	if p.Resolv == "" {
		p.Resolv = d.Resolv
	}
	if p.Hostname == "" {
		p.Hostname = d.Hostname
	}
	s := &Service{paths: p, host: opts.Hostname, log: opts.Logger, conn: opts.Conn, leases: map[string]*Lease{}}
	if s.host == nil {
		s.host = KernelHostname{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.conn == nil {
		c, err := rtnetlink.Dial(nil)
		if err != nil {
			return nil, fmt.Errorf("dial rtnetlink: %w", err)
		}
		s.conn, s.owned = c, true
	}
	return s, nil
}

// Close closes the netlink connection the service dialled.
func (s *Service) Close() error {
	if s.owned {
		return s.conn.Close()
	}
	return nil
}

// Change is one thing Apply changed, for the log ("bond0: created").
type Change string

// step is one stage of Apply.
type step struct {
	name string
	run  func(*nodeconfig.Config) ([]Change, error)
}

func (s step) String() string { return s.name }

// Apply brings links, addresses, routes, the host name and the files to
// cfg and returns what it changed; nothing when all was already so. DHCP
// leases are Run's business.
func (s *Service) Apply(cfg *nodeconfig.Config) ([]Change, error) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	steps := []step{
		{"match links", s.matchLinks},
		{"bonds", s.applyBonds},
		{"vlans", s.applyVLANs},
		{"mtu and up", s.applyLinkSettings},
		{"addresses", s.applyAddresses},
		{"routes", s.applyRoutes},
		{"hostname", s.applyHostname},
		{"files", func(*nodeconfig.Config) ([]Change, error) { return s.writeFiles() }},
	}
	var all []Change
	for _, st := range steps {
		ch, err := st.run(cfg)
		all = append(all, ch...)
		if err != nil {
			return all, fmt.Errorf("apply %s: %w", st, err)
		}
	}
	for _, c := range all {
		s.log.Info("changed", "what", string(c))
	}
	return all, nil
}

func changef(format string, args ...any) Change {
	return Change(strings.TrimSpace(fmt.Sprintf(format, args...)))
}
