package mail

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Milter protocol (Sendmail's libmilter, version 6, as Postfix speaks
// it): each packet is a 32-bit length, a command byte and its data.
const (
	milterOptNeg  = 'O' // SMFIC_OPTNEG: version, actions, protocol flags
	milterQuit    = 'Q' // SMFIC_QUIT
	milterVersion = 6
)

// milterReady negotiates with rspamd's milter as Postfix's smtpd does
// first (SMFIC_OPTNEG) and quits: an rspamd worker answers, not only its
// main process's listening socket. The socket is reached through the
// directory's descriptor (/proc/self/fd/N/NAME), so the length of the
// workload root's path does not matter (a socket path has at most 107
// bytes).
func (w *Workload) milterReady(ctx context.Context) error {
	dir := filepath.Join(w.rootfs(), filepath.Dir(milterSocket))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rspamd milter: %w", err)
	}
	defer unix.Close(fd)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(milterSocket)))
	if err != nil {
		return fmt.Errorf("rspamd milter: %w", err)
	}
	defer c.Close()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	c.SetDeadline(dl)
	data := make([]byte, 12)
	binary.BigEndian.PutUint32(data, milterVersion)
	if err := writeMilter(c, milterOptNeg, data); err != nil {
		return fmt.Errorf("rspamd milter: %w", err)
	}
	cmd, err := readMilter(c)
	if err != nil {
		return fmt.Errorf("rspamd milter: %w", err)
	}
	if cmd != milterOptNeg {
		return fmt.Errorf("rspamd milter: answered %q to the option negotiation, want %q", cmd, milterOptNeg)
	}
	return writeMilter(c, milterQuit, nil)
}

func writeMilter(w io.Writer, cmd byte, data []byte) error {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(data)))
	b = append(append(b, cmd), data...)
	_, err := w.Write(b)
	return err
}

// readMilter reads one packet and returns its command.
func readMilter(r io.Reader) (byte, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return 0, err
	}
	if n == 0 || n > 1<<16 {
		return 0, fmt.Errorf("a packet of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, err
	}
	return b[0], nil
}
