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
	return inside(l, "dial", network, addr, func() (net.Conn, error) {
		// A literal address: the socket is made on this goroutine
		// (dialSerial: no resolver, no happy-eyeballs racers).
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	})
}

// Listen listens on addr (IP:port, e.g. HostAddr:8080) inside the lab's
// namespace, for a stand-in service the nodes reach at the host's address.
func (l *Lab) Listen(network, addr string) (net.Listener, error) {
	return inside(l, "listen", network, addr, func() (net.Listener, error) { return net.Listen(network, addr) })
}

// ListenPacket is Listen for packet networks ("udp4").
func (l *Lab) ListenPacket(network, addr string) (net.PacketConn, error) {
	return inside(l, "listen", network, addr, func() (net.PacketConn, error) { return net.ListenPacket(network, addr) })
}

// inside runs open, which makes a socket for addr (IP:port), on a thread
// in the lab's namespace (netns.Do).
func inside[T any](l *Lab, op, network, addr string, open func() (T, error)) (T, error) {
	var v T
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return v, fmt.Errorf("lab: %s %s: want IP:port (names are not resolved in the lab): %w", op, addr, err)
	}
	err := netns.Do(l.netns, func() (err error) {
		v, err = open()
		return err
	})
	if err != nil {
		return v, fmt.Errorf("lab: %s %s %s: %w", op, network, addr, err)
	}
	return v, nil
}
