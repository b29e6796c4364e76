package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"tandem/internal/netns"
)

// The host's port: a TAP device inside a network namespace that the lab
// creates and removes. A test reaches the nodes with `ip netns exec NS
// ...`; the host's own namespace gets no device, address or route.

// ip runs the ip tool.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hostPort creates namespace ns with a TAP device ifname holding addr
// (CIDR) and returns the TAP's file: one Ethernet frame per read or write.
// Closing it removes the device.
func hostPort(ns, ifname, addr string) (*os.File, error) {
	if err := ip("netns", "add", ns); err != nil {
		return nil, err
	}
	tap, err := openTapIn(ns, ifname)
	if err != nil {
		_ = ip("netns", "del", ns) // undoing a failed start; its error is the one to report
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", addr, "dev", ifname},
		{"-n", ns, "link", "set", ifname, "up"},
	} {
		if err := ip(args...); err != nil {
			tap.Close()
			_ = ip("netns", "del", ns) // undoing a failed start; its error is the one to report
			return nil, err
		}
	}
	return tap, nil
}

// openTapIn creates a TAP device ifname in namespace ns.
func openTapIn(ns, ifname string) (tap *os.File, err error) {
	err = netns.Do(ns, func() error {
		tap, err = openTap(ifname)
		return err
	})
	return tap, err
}

// openTap creates a TAP device in the calling thread's namespace.
func openTap(ifname string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", ifname, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", ifname, err)
	}
	// Non-blocking, so reads go through the runtime poller and Close
	// unblocks them.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+ifname), nil
}

// removeNetns deletes namespace ns if it exists.
func removeNetns(ns string) error {
	if _, err := os.Stat("/run/netns/" + ns); os.IsNotExist(err) {
		return nil
	}
	return ip("netns", "del", ns)
}
