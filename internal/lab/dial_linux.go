package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"tandem/internal/netns"
)

// Dial connects to addr from inside the lab's namespace, where HostAddr
// is the host's address and the nodes and the VIP are reachable; the
// connection is usable from any goroutine. addr must be an IP literal
// with a port ("10.77.0.100:25"): resolving a name would run on other
// goroutines, outside the namespace. Dial has the shape of
// net.Dialer.DialContext, so l.Dial plugs into clients that take a dialer
// (http.Transport.DialContext, the time service's Config.Dial), and its
// conn into smtp.NewClient or an IMAP client.
func (l *Lab) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := literal("dial", addr); err != nil {
		return nil, err
	}
	var c net.Conn
	err := netns.Do(l.netns, func() (err error) {
		// A literal address: the socket is made on this goroutine
		// (dialSerial, no resolver and no happy-eyeballs racers).
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s %s: %w", network, addr, err)
	}
	return c, nil
}

// Listen listens on addr (IP:port, e.g. HostAddr:8080) inside the lab's
// namespace, for a stand-in service the nodes reach at the host's address.
func (l *Lab) Listen(network, addr string) (ln net.Listener, err error) {
	if err := literal("listen", addr); err != nil {
		return nil, err
	}
	err = netns.Do(l.netns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen %s %s: %w", network, addr, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet networks ("udp4").
func (l *Lab) ListenPacket(network, addr string) (pc net.PacketConn, err error) {
	if err := literal("listen", addr); err != nil {
		return nil, err
	}
	err = netns.Do(l.netns, func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen %s %s: %w", network, addr, err)
	}
	return pc, nil
}

// literal checks that addr is IP:port.
func literal(op, addr string) error {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return fmt.Errorf("lab: %s %s: want IP:port (names are not resolved in the lab): %w", op, addr, err)
	}
	return nil
}
