package replication

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the guests' half of BenchmarkReplicatedWrite. The host
// asks for the benchmark with a QEMU -fw_cfg item (the number of rounds)
// and gives guest A a second, raw virtio disk. A seeds the resource
// (no initial sync), promotes and compares writes to /dev/drbd0 with
// writes to the raw disk; B only brings the resource up and waits.

const (
	// benchFwCfg is the -fw_cfg item that holds the rounds; without it
	// the guests run TestGuestFailover.
	benchFwCfg = "opt/tandem/bench-rounds"
	// benchRawSerial is the raw disk's virtio serial.
	benchRawSerial = "tandem-raw"
	// benchSize is what one pass writes to a device, in benchBlock writes.
	benchSize  = 32 << 20
	benchBlock = 1 << 20
	// benchSinkPort is where B takes the link passes: plain TCP over the
	// replication link, the throughput DRBD's is measured against.
	benchSinkPort = 7001
)

// The benchmark's console marks; a round's marks end with its index.
const (
	markSeeded       = "seeded"
	markRound        = "round-"       // connected: "replicated=MB/s raw=MB/s"
	markDisconnected = "disconnected" // the state after drbdadm disconnect
	markStandalone   = "standalone-"  // the same, the peer disconnected
	markLink         = "link-"        // connected rounds: "link=MB/s", TCP to B on the same link
)

// benchRounds is the number of rounds the host asked for, 0 if it asked
// for no benchmark.
func benchRounds() (int, error) {
	b, err := os.ReadFile(filepath.Join("/sys/firmware/qemu_fw_cfg/by_name", benchFwCfg, "raw"))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("fw_cfg %s: %q is not a number of rounds", benchFwCfg, b)
	}
	return n, nil
}

// guestBenchA seeds the new resource, promotes it and writes, round after
// round, benchSize to /dev/drbd0 (connected, protocol C: every write
// waits for the peer's disk) and to the raw disk; then it disconnects
// (StandAlone, I/O not suspended) and does the same rounds again, so
// /dev/drbd0 writes to its own disk only.
func guestBenchA(ctx context.Context, r *Resource, rounds int) error {
	if err := benchSeed(ctx, r); err != nil {
		return err
	}
	c, err := dialPeer(ctx, "10.98.0.2")
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintln(c, "bench")
	raw, err := benchRawDisk()
	if err != nil {
		return err
	}
	devs, err := openDirect(r.Config.Device(), raw)
	if err != nil {
		return err
	}
	defer devs[0].Close()
	defer devs[1].Close()
	buf, err := benchBuffer()
	if err != nil {
		return err
	}
	if err := benchPasses(devs, buf, rounds, markRound); err != nil {
		return err
	}
	for i := range rounds {
		mbps, err := linkPass(ctx, buf)
		if err != nil {
			return err
		}
		guestSay(markLink+strconv.Itoa(i), "link=%.2f", mbps)
	}
	if err := r.Disconnect(ctx); err != nil {
		return err
	}
	s, err := waitStatus(ctx, r, func(s Status) bool { return s.Connection == "StandAlone" && s.Suspended == "no" })
	if err != nil {
		return err
	}
	guestSay(markDisconnected, "role=%s connection=%s peer-disk=%s", s.Role, s.Connection, s.PeerDisk)
	if err := benchPasses(devs, buf, rounds, markStandalone); err != nil {
		return err
	}
	fmt.Fprintln(c, "done")
	return nil
}

// benchPasses writes a pass to each of devs (replicated, raw) per round,
// alternating which goes first, after one pass each that warms up (DRBD's
// activity log, QEMU's image files) and is not reported; it says each
// round's figures under mark and the round's index.
func benchPasses(devs []*os.File, buf []byte, rounds int, mark string) error {
	for i := -1; i < rounds; i++ {
		var mbps [2]float64
		for j := range 2 {
			k := (i + 2 + j) % 2 // even rounds: replicated first
			var err error
			if mbps[k], err = writePass(devs[k], buf); err != nil {
				return err
			}
		}
		if i >= 0 {
			guestSay(mark+strconv.Itoa(i), "replicated=%.2f raw=%.2f", mbps[0], mbps[1])
		}
	}
	return nil
}

// benchSeed waits until the two new disks are connected, starts the data
// generation without a sync as the cluster does on creation, waits for
// both disks UpToDate and promotes. DRBD refuses to seed ("Need to be
// StandAlone") unless the connection is established at that moment, and
// a loaded TCG guest can lose it and reconnect (ping-timeout), so seeding
// is tried again a few times.
func benchSeed(ctx context.Context, r *Resource) error {
	bothNew := func(s Status) bool {
		return s.Connection == "Connected" && s.Replication == "Established" && s.Disk == "Inconsistent" && s.PeerDisk == "Inconsistent"
	}
	start := time.Now()
	for try := 1; ; try++ {
		if _, err := waitStatus(ctx, r, bothNew); err != nil {
			return err
		}
		err := r.SeedNew(ctx)
		if err == nil {
			break
		}
		if try == 5 {
			return err
		}
		fmt.Printf("replication bench: %v; trying again\n", err)
		time.Sleep(time.Second)
	}
	s, err := waitStatus(ctx, r, Status.Connected)
	if err != nil {
		return err
	}
	guestSay(markSeeded, "disk=%s peer-disk=%s after %.1fs", s.Disk, s.PeerDisk, time.Since(start).Seconds())
	return r.Primary(ctx, false)
}

// benchRawDisk finds the raw disk by its virtio serial; it must not be
// the resource's backing disk.
func benchRawDisk() (string, error) {
	serials, _ := filepath.Glob("/sys/block/vd*/serial")
	for _, p := range serials {
		b, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(b)) != benchRawSerial {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(p))
		if dev == guestConfig().Nodes[0].Disk {
			return "", fmt.Errorf("raw disk %s is the resource's backing disk", dev)
		}
		return dev, nil
	}
	return "", fmt.Errorf("no virtio disk with serial %s", benchRawSerial)
}

// openDirect opens the devices for O_DIRECT writes: each write goes to
// the device (for DRBD, to both disks) and returns when it is done, with
// no page cache to batch or defer it.
func openDirect(paths ...string) ([]*os.File, error) {
	var fs []*os.File
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_WRONLY|unix.O_DIRECT, 0)
		if err != nil {
			for _, f := range fs {
				f.Close()
			}
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// benchBuffer is one write's data: seeded random bytes in page-aligned
// memory, as O_DIRECT needs.
func benchBuffer() ([]byte, error) {
	b, err := unix.Mmap(-1, 0, benchBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}).Read(b)
	return b, nil
}

// writePass writes benchSize from offset 0 in len(buf) writes, one at a
// time, then fdatasyncs (a cache flush, which DRBD also sends to the
// peer), and returns the throughput in MB/s (10^6 bytes).
func writePass(f *os.File, buf []byte) (float64, error) {
	start := time.Now()
	for off := int64(0); off < benchSize; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	return benchSize / 1e6 / time.Since(start).Seconds(), nil
}

// linkPass sends benchSize to B's sink over TCP in len(buf) writes and
// waits for B to say it has all of it: the replication link's own
// throughput, in MB/s.
func linkPass(ctx context.Context, buf []byte) (float64, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("10.98.0.2:%d", benchSinkPort))
	if err != nil {
		return 0, fmt.Errorf("link pass: %w", err)
	}
	defer c.Close()
	start := time.Now()
	for n := 0; n < benchSize; n += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return 0, fmt.Errorf("link pass: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("link pass: %w", err)
	}
	var got int
	if _, err := fmt.Fscanf(c, "ok %d\n", &got); err != nil || got != benchSize {
		return 0, fmt.Errorf("link pass: B received %d of %d bytes: %v", got, benchSize, err)
	}
	return benchSize / 1e6 / time.Since(start).Seconds(), nil
}

// benchSink, on B, takes the link passes: it reads each connection to
// its end and says how much it got.
func benchSink() {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", benchSinkPort))
	if err != nil {
		guestSay(markError, "bench sink: %v", err)
		return
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "ok %d\n", n)
		c.Close()
	}
}
