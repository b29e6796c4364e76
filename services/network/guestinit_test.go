package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"tandem/internal/nodeconfig"
	"tandem/lab/vmtest"
	"tandem/services/ntp"
)

// This file is the other half of TestGuestBondVLAN: the same test binary,
// built static, is /init of a QEMU guest with Debian's kernel. The guest
// has four NICs: lan0/lan1 (the node's bond) are wired through QEMU hubs
// to p0/p1, which the guest moves into a second network namespace as the
// peer, also bonded. Both sides are configured by this package's Apply.

const guestNodeConfig = `
hostname: guest
network:
  links:
    - {name: lan0, mac: "52:54:00:80:00:01"}
    - {name: lan1, mac: "52:54:00:80:00:02"}
  bonds:
    - {name: bond0, members: [lan0, lan1], primary: lan0, miimon: 50ms, addresses: [10.80.0.2/24]}
  vlans:
    - {name: vlan42, link: bond0, id: 42, mtu: 1400, addresses: [10.81.0.2/24]}
`

const guestPeerConfig = `
hostname: peer
network:
  links:
    - {name: p0, mac: "52:54:00:80:00:03"}
    - {name: p1, mac: "52:54:00:80:00:04"}
  bonds:
    - {name: pbond, members: [p0, p1], primary: p0, miimon: 50ms, addresses: [10.80.0.1/24]}
  vlans:
    - {name: pvlan42, link: pbond, id: 42, addresses: [10.81.0.1/24]}
`

// guestResult is what the guest prints for the host to check.
type guestResult struct {
	Error        string      `json:"error,omitempty"`
	FirstApply   []Change    `json:"first_apply"`
	SecondApply  []Change    `json:"second_apply"`
	Before       []LinkState `json:"before"`
	After        []LinkState `json:"after"`
	BondBefore   int         `json:"bond_before"` // echo replies over bond0, before the cable pull
	VLANBefore   int         `json:"vlan_before"`
	BondAfter    int         `json:"bond_after"` // and after the failover
	VLANAfter    int         `json:"vlan_after"`
	FailoverTook string      `json:"failover_took"`
	// services/ntp's SystemClock on a real (guest) clock.
	ClockStepped time.Duration `json:"clock_stepped"` // wall clock moved by Step(1h)
	SlewPending  time.Duration `json:"slew_pending"`  // kernel offset after Slew(200ms)
}

const (
	guestMarkPull   = "TANDEM-GUEST-PULL-CABLE"
	guestMarkResult = "TANDEM-GUEST-RESULT "
)

// guestMain runs as PID 1 in the guest and powers it off at the end.
func guestMain() {
	res := guestRun()
	b, _ := json.Marshal(res)
	fmt.Printf("\n%s%s\n", guestMarkResult, b)
	vmtest.PowerOff()
}

func guestRun() (res guestResult) {
	fail := func(format string, args ...any) guestResult {
		res.Error = fmt.Sprintf(format, args...)
		return res
	}
	if err := vmtest.Init(); err != nil {
		return fail("%v", err)
	}
	if err := guestClock(&res); err != nil {
		return fail("clock: %v", err)
	}
	if err := waitLinks(4); err != nil {
		return fail("%v", err)
	}
	peerNS, err := newNetNS()
	if err != nil {
		return fail("peer netns: %v", err)
	}
	if err := moveToNS(peerNS, "52:54:00:80:00:03", "52:54:00:80:00:04"); err != nil {
		return fail("move peer links: %v", err)
	}
	peerConn, err := rtnetlink.Dial(&netlink.Config{NetNS: peerNS})
	if err != nil {
		return fail("peer rtnetlink: %v", err)
	}
	if _, err := guestApply(peerConn, guestPeerConfig, "peer"); err != nil {
		return fail("peer apply: %v", err)
	}
	node, err := guestService(nil, "node")
	if err != nil {
		return fail("%v", err)
	}
	cfg, _ := nodeconfig.Load(strings.NewReader(guestNodeConfig), "node.yaml")
	if res.FirstApply, err = node.Apply(cfg); err != nil {
		return fail("node apply: %v", err)
	}
	if res.SecondApply, err = node.Apply(cfg); err != nil {
		return fail("node apply again: %v", err)
	}
	echo, err := inNS(peerNS, func() (net.PacketConn, error) { return net.ListenPacket("udp4", "0.0.0.0:7") })
	if err != nil {
		return fail("echo server: %v", err)
	}
	go serveEcho(echo)
	if err := waitActive(node, "lan0", 10*time.Second); err != nil {
		return fail("before: %v", err)
	}
	if !waitEcho("10.80.0.1:7", 10*time.Second) || !waitEcho("10.81.0.1:7", 10*time.Second) {
		return fail("no echo over bond0 or vlan42 before the failover")
	}
	res.Before, _ = node.State()
	res.BondBefore, res.VLANBefore = countEcho("10.80.0.1:7", "10.81.0.1:7", 2*time.Second)

	fmt.Printf("\n%s\n", guestMarkPull) // the host sets nic0 and nic2 down
	start := time.Now()
	if err := waitActive(node, "lan1", 20*time.Second); err != nil {
		res.After, _ = node.State()
		return fail("after the cable pull: %v", err)
	}
	res.FailoverTook = time.Since(start).Round(time.Millisecond).String()
	waitEcho("10.80.0.1:7", 5*time.Second)
	res.BondAfter, res.VLANAfter = countEcho("10.80.0.1:7", "10.81.0.1:7", 2*time.Second)
	res.After, _ = node.State()
	return res
}

// guestClock steps and slews the guest's real clock through the time
// service's SystemClock (never done on the host).
func guestClock(res *guestResult) error {
	before := time.Now().Round(0) // wall clock only
	if err := (ntp.SystemClock{}).Step(time.Hour); err != nil {
		return err
	}
	res.ClockStepped = time.Now().Round(0).Sub(before)
	if err := (ntp.SystemClock{}).Slew(200 * time.Millisecond); err != nil {
		return err
	}
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return err
	}
	res.SlewPending = time.Duration(tx.Offset)
	if tx.Status&unix.STA_NANO == 0 {
		res.SlewPending *= time.Microsecond
	}
	return nil
}

func waitLinks(n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ifs, _ := net.Interfaces()
		eth := 0
		for _, i := range ifs {
			if len(i.HardwareAddr) == 6 {
				eth++
			}
		}
		if eth >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d Ethernet links after 20s, want %d", eth, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newNetNS returns an fd of a new network namespace.
func newNetNS() (int, error) {
	type r struct {
		fd  int
		err error
	}
	ch := make(chan r)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- r{-1, err}
			return
		}
		fd, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		ch <- r{fd, err}
	}()
	res := <-ch
	return res.fd, res.err
}

// inNS runs fn on a thread inside the namespace fd.
func inNS[T any](fd int, fn func() (T, error)) (T, error) {
	type r struct {
		v   T
		err error
	}
	ch := make(chan r)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			var zero T
			ch <- r{zero, err}
			return
		}
		v, err := fn()
		ch <- r{v, err}
	}()
	res := <-ch
	return res.v, res.err
}

func moveToNS(fd int, macs ...string) error {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	links, err := c.Link.List()
	if err != nil {
		return err
	}
	for _, mac := range macs {
		found := false
		for _, l := range links {
			if l.Attributes.Address.String() == mac {
				found = true
				err := c.Link.Set(&rtnetlink.LinkMessage{Index: l.Index, Attributes: &rtnetlink.LinkAttributes{NetNS: rtnetlink.NetNSForFD(uint32(fd))}})
				if err != nil {
					return fmt.Errorf("move %s: %w", mac, err)
				}
			}
		}
		if !found {
			return fmt.Errorf("no link with mac %s", mac)
		}
	}
	return nil
}

func guestService(conn *rtnetlink.Conn, name string) (*Service, error) {
	dir := filepath.Join("/tmp", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return New(Options{
		Conn:     conn,
		Paths:    Paths{Hosts: filepath.Join(dir, "hosts"), Resolv: filepath.Join(dir, "resolv.conf"), Hostname: filepath.Join(dir, "hostname")},
		Hostname: fileHostname(filepath.Join(dir, "kernel-hostname")),
		Logger:   slog.New(slog.NewTextHandler(os.Stdout, nil)).With("component", "network", "side", name),
	})
}

func guestApply(conn *rtnetlink.Conn, config, name string) ([]Change, error) {
	svc, err := guestService(conn, name)
	if err != nil {
		return nil, err
	}
	cfg, err := nodeconfig.Load(strings.NewReader(config), name+".yaml")
	if err != nil {
		return nil, err
	}
	return svc.Apply(cfg)
}

// waitActive waits until member is the active member of its bond.
func waitActive(svc *Service, member string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		st, err := svc.State()
		if err != nil {
			return err
		}
		for _, l := range st {
			if l.Name == member && l.BondState == "active" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not the active bond member after %v: %v", member, d, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func serveEcho(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// waitEcho reports whether addr echoes within d.
func waitEcho(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n, _ := countEcho(addr, "", 200*time.Millisecond); n > 0 {
			return true
		}
	}
	return false
}

// countEcho sends to both addresses every 20ms for d and counts replies.
func countEcho(a, b string, d time.Duration) (int, int) {
	var na, nb atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	run := func(addr string, n *atomic.Int64) {
		if addr == "" {
			return
		}
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return
		}
		defer c.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				k, err := c.Read(buf)
				if err != nil {
					return
				}
				if bytes.HasPrefix(buf[:k], []byte("ping")) {
					n.Add(1)
				}
			}
		}()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			_, _ = c.Write([]byte("ping"))
			select {
			case <-ctx.Done():
				time.Sleep(50 * time.Millisecond)
				return
			case <-t.C:
			}
		}
	}
	done := make(chan bool)
	go func() { run(b, &nb); done <- true }()
	run(a, &na)
	<-done
	return int(na.Load()), int(nb.Load())
}
