package pid1

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// loopbackUp brings lo up (the kernel then gives it 127.0.0.1/8 and ::1):
// services listen on loopback (the cluster daemon's etcd and API, DNS)
// whatever the node config says about the real links.
func (in *Init) loopbackUp(context.Context) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: set up: %w", err)
	}
	return nil
}
