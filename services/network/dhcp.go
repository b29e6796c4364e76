package network

import (
	"context"
	"fmt"
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
	var wg sync.WaitGroup
	for _, ifc := range cfg.Interfaces() {
		if ifc.DHCP {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runDHCP(ctx, ifc.Name, emit)
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

func (s *Service) runDHCP(ctx context.Context, ifname string, emit func(Event)) {
	log := s.log.With("iface", ifname)
	backoff := time.Second
	for ctx.Err() == nil {
		c, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
		if err != nil {
			log.Warn("dhcp client", "err", err)
		} else {
			err = s.keepLease(ctx, c, ifname, emit)
			c.Close()
			if err != nil {
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

// keepLease obtains a lease and renews it until ctx ends (release) or the
// lease runs out (nil: start over).
func (s *Service) keepLease(ctx context.Context, c *nclient4.Client, ifname string, emit func(Event)) error {
	start := time.Now()
	nl, err := c.Request(ctx)
	if err != nil {
		return fmt.Errorf("request lease: %w", err)
	}
	lease, err := toLease(ifname, nl)
	if err != nil {
		return err
	}
	if err := s.bindLease(nil, lease); err != nil {
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
		renewed, err := c.Renew(ctx, nl)
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
		next, err := toLease(ifname, renewed)
		if err != nil {
			return err
		}
		next.Renewals = lease.Renewals + 1
		if err := s.bindLease(lease, next); err != nil {
			return err
		}
		nl, lease, wait = renewed, next, next.Renew
		emit(Event{Kind: EventRenewed, Iface: ifname, Lease: lease})
		s.log.Info("renewed", "iface", ifname, "addr", lease.Addr, "for", lease.Duration)
	}
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

func toLease(ifname string, nl *nclient4.Lease) (*Lease, error) {
	ack := nl.ACK
	a, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || a.IsUnspecified() {
		return nil, fmt.Errorf("lease on %s: no address in the ACK", ifname)
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	l := &Lease{
		Iface:    ifname,
		Addr:     netip.PrefixFrom(a, bits),
		Obtained: time.Now(),
		Duration: ack.IPAddressLeaseTime(time.Hour),
	}
	l.Renew = ack.IPAddressRenewalTime(l.Duration / 2)
	if l.Renew <= 0 || l.Renew >= l.Duration {
		l.Renew = l.Duration / 2
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router, _ = netip.AddrFromSlice(r[0].To4())
	}
	l.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	for _, d := range ack.DNS() {
		l.DNS = append(l.DNS, d.String())
	}
	return l, nil
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
