package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"tandem/internal/nodeconfig"
)

// Lease is a DHCPv4 lease as applied to an interface.
type Lease struct {
	Iface    string        `json:"iface"`
	Addr     netip.Prefix  `json:"addr"`
	Router   netip.Addr    `json:"router"`
	DNS      []string      `json:"dns"`
	Server   netip.Addr    `json:"server"`
	Obtained time.Time     `json:"obtained"`
	Duration time.Duration `json:"duration"`
	Renew    time.Duration `json:"renew"` // T1
	Renewals int           `json:"renewals"`
}

// EventKind says what happened.
type EventKind string

// The events Run reports.
const (
	EventApplied  EventKind = "applied"  // static config applied; Changes set
	EventLease    EventKind = "lease"    // a lease obtained and applied
	EventRenewed  EventKind = "renewed"  // a lease renewed
	EventExpired  EventKind = "expired"  // a lease ran out unrenewed and was removed
	EventReleased EventKind = "released" // a lease released at shutdown
)

// Event is something Run did, for the daemon's status and the tests.
type Event struct {
	Kind    EventKind     `json:"kind"`
	Iface   string        `json:"iface,omitempty"`
	Lease   *Lease        `json:"lease,omitempty"`
	Changes []Change      `json:"changes,omitempty"`
	Took    time.Duration `json:"took,omitempty"` // time to lease
}

// dhcpRouteMetric keeps DHCP default routes behind static ones.
const dhcpRouteMetric = 1024

// Run applies cfg, then keeps a DHCP lease on every interface that asks
// for one until ctx ends, when it releases them and returns. Each event
// goes to emit (which must not block for long).
func (s *Service) Run(ctx context.Context, cfg *nodeconfig.Config, emit func(Event)) error {
	changes, err := s.Apply(cfg)
	if err != nil {
		return err
	}
	emit(Event{Kind: EventApplied, Changes: changes})
	reserved := clusterAddrs(cfg)
	var wg sync.WaitGroup
	for _, ifc := range cfg.Interfaces() {
		if ifc.DHCP {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runDHCP(ctx, ifc.Name, reserved, emit)
			}()
		}
	}
	wg.Wait()
	// A node with static addresses only has nothing to renew, but the
	// service lives as long as the node: returning early made PID 1
	// restart it over and over.
	<-ctx.Done()
	return nil
}

// runDHCP keeps a lease on ifname until ctx ends, starting over (after a
// backoff) whenever the client fails, a reply is refused or a lease runs
// out. A lease may not hand out a reserved address.
func (s *Service) runDHCP(ctx context.Context, ifname string, reserved reservedAddrs, emit func(Event)) {
	log := s.log.With("iface", ifname)
	backoff := time.Second
	for ctx.Err() == nil {
		c, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
		if err != nil {
			log.Warn("dhcp client", "err", err)
		} else {
			err = s.keepLease(ctx, c, ifname, reserved, emit)
			c.Close()
			var bad *LeaseError
			if errors.As(err, &bad) {
				logRefused(log, bad)
			} else if err != nil {
				log.Warn("dhcp", "err", err)
			} else {
				backoff = time.Second
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

func logRefused(log *slog.Logger, e *LeaseError) {
	log.Warn("dhcp reply refused", "server", e.Server, "field", e.Field, "value", e.Value, "reason", e.Reason)
}

func logAdjusted(log *slog.Logger, adj []adjustment) {
	for _, a := range adj {
		log.Warn("dhcp reply adjusted", "field", a.Field, "value", a.Value, "used", a.Used)
	}
}

// obtain gets a lease whose offer and ACK both pass checkReply; a bad
// offer is never requested.
func (s *Service) obtain(ctx context.Context, c *nclient4.Client, ifname string, reserved reservedAddrs) (*nclient4.Lease, *Lease, error) {
	offer, err := c.DiscoverOffer(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("discover: %w", err)
	}
	if _, _, err := checkReply(ifname, offer, reserved); err != nil {
		return nil, nil, fmt.Errorf("offer: %w", err)
	}
	nl, err := c.RequestFromOffer(ctx, offer)
	if err != nil {
		return nil, nil, fmt.Errorf("request lease: %w", err)
	}
	lease, adj, err := checkReply(ifname, nl.ACK, reserved)
	if err != nil {
		return nil, nil, fmt.Errorf("ack: %w", err)
	}
	logAdjusted(s.log.With("iface", ifname), adj)
	lease.Obtained = time.Now()
	return nl, lease, nil
}

// keepLease obtains a lease and renews it until ctx ends (release) or the
// lease runs out (nil: start over). A renewal whose ACK is refused counts
// as no answer: the lease in place stays until it runs out.
func (s *Service) keepLease(ctx context.Context, c *nclient4.Client, ifname string, reserved reservedAddrs, emit func(Event)) error {
	start := time.Now()
	nl, lease, err := s.obtain(ctx, c, ifname, reserved)
	if err != nil {
		return err
	}
	if err := s.bindLease(nil, lease); err != nil {
		s.unbindLease(lease)
		return err
	}
	emit(Event{Kind: EventLease, Iface: ifname, Lease: lease, Took: time.Since(start)})
	s.log.Info("lease", "iface", ifname, "addr", lease.Addr, "router", lease.Router, "for", lease.Duration)
	wait := lease.Renew
	for {
		select {
		case <-ctx.Done():
			return s.release(nl, lease, emit)
		case <-time.After(wait):
		}
		renewed, next, err := s.renew(ctx, c, nl, ifname, reserved)
		if err != nil {
			left := time.Until(lease.Obtained.Add(lease.Duration))
			if left <= 0 {
				s.unbindLease(lease)
				emit(Event{Kind: EventExpired, Iface: ifname, Lease: lease})
				return fmt.Errorf("lease %s expired: %w", lease.Addr, err)
			}
			wait = max(left/2, time.Second)
			s.log.Warn("renew", "iface", ifname, "err", err, "retry_in", wait)
			continue
		}
		next.Renewals = lease.Renewals + 1
		if err := s.bindLease(lease, next); err != nil {
			s.unbindLease(next)
			return err
		}
		nl, lease, wait = renewed, next, next.Renew
		emit(Event{Kind: EventRenewed, Iface: ifname, Lease: lease})
		s.log.Info("renewed", "iface", ifname, "addr", lease.Addr, "for", lease.Duration)
	}
}

// renew renews nl and checks the ACK; a refused one is logged here and
// returned as the error.
func (s *Service) renew(ctx context.Context, c *nclient4.Client, nl *nclient4.Lease, ifname string, reserved reservedAddrs) (*nclient4.Lease, *Lease, error) {
	renewed, err := c.Renew(ctx, nl)
	if err != nil {
		return nil, nil, err
	}
	log := s.log.With("iface", ifname)
	next, adj, err := checkReply(ifname, renewed.ACK, reserved)
	if err != nil {
		var bad *LeaseError
		if errors.As(err, &bad) {
			logRefused(log, bad)
		}
		return nil, nil, fmt.Errorf("renewal ack: %w", err)
	}
	logAdjusted(log, adj)
	next.Obtained = time.Now()
	return renewed, next, nil
}

func (s *Service) release(nl *nclient4.Lease, lease *Lease, emit func(Event)) error {
	err := sendRelease(nl, lease)
	s.unbindLease(lease)
	emit(Event{Kind: EventReleased, Iface: lease.Iface, Lease: lease})
	s.log.Info("released", "iface", lease.Iface, "addr", lease.Addr)
	return err
}

// sendRelease unicasts a DHCPRELEASE from the leased address to the
// server (RFC 2131 4.4.4). nclient4's Release sends it from 0.0.0.0 on the
// raw socket, which the server's kernel drops as a martian.
func sendRelease(nl *nclient4.Lease, lease *Lease) error {
	req, err := dhcpv4.NewReleaseFromACK(nl.ACK)
	if err != nil {
		return fmt.Errorf("release %s: %w", lease.Addr, err)
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: lease.Addr.Addr().AsSlice(), Port: dhcpv4.ClientPort},
		&net.UDPAddr{IP: lease.Server.AsSlice(), Port: dhcpv4.ServerPort})
	if err != nil {
		return fmt.Errorf("release %s: %w", lease.Addr, err)
	}
	defer c.Close()
	if _, err := c.Write(req.ToBytes()); err != nil {
		return fmt.Errorf("release %s: %w", lease.Addr, err)
	}
	return nil
}

// bindLease applies lease (replacing old, which may be nil): address,
// default route, resolv.conf.
func (s *Service) bindLease(old, lease *Lease) error {
	if old != nil && old.Addr != lease.Addr {
		s.unbindLease(old)
	}
	if _, err := s.ensureAddr(lease.Iface, lease.Addr); err != nil {
		return err
	}
	if lease.Router.IsValid() {
		if _, err := s.ensureRoute(route{netip.PrefixFrom(netip.IPv4Unspecified(), 0), lease.Router, lease.Iface, dhcpRouteMetric}); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.leases[lease.Iface] = lease
	s.mu.Unlock()
	_, err := s.writeFiles()
	return err
}

// unbindLease removes what bindLease applied; errors are logged, since
// there is nothing better to do with them.
func (s *Service) unbindLease(lease *Lease) {
	if lease.Router.IsValid() {
		if l, err := s.link(lease.Iface); err == nil {
			r := route{netip.PrefixFrom(netip.IPv4Unspecified(), 0), lease.Router, lease.Iface, dhcpRouteMetric}
			if err := s.removeRoute(r, l.Index); err != nil {
				s.log.Warn("unbind lease", "iface", lease.Iface, "err", err)
			}
		}
	}
	if err := s.removeAddr(lease.Iface, lease.Addr); err != nil {
		s.log.Warn("unbind lease", "iface", lease.Iface, "err", err)
	}
	s.mu.Lock()
	delete(s.leases, lease.Iface)
	s.mu.Unlock()
	if _, err := s.writeFiles(); err != nil {
		s.log.Warn("unbind lease", "iface", lease.Iface, "err", err)
	}
}

// Leases returns the current DHCP leases.
func (s *Service) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Lease
	for _, l := range s.leases {
		out = append(out, *l)
	}
	return out
}
