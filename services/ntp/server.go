package ntp

import (
	"encoding/binary"
	"errors"
	"net"
	"time"
)

// Server answers SNTP clients (RFC 4330: mode 3 requests, mode 4 replies)
// from a clock: the lab's stand-in for a site's NTP server, and the fake
// server of this package's tests. It keeps no state and never sends more
// than it received, so it amplifies nothing.
type Server struct {
	// Now is the clock served; nil serves time.Now.
	Now func() time.Time
	// Stratum is announced in replies; 0 means 1 (a reference clock,
	// reference ID "LOCL").
	Stratum byte
}

// Serve answers requests on conn until conn is closed; it then returns
// nil.
func (s Server) Serve(conn net.PacketConn) error {
	buf := make([]byte, 512)
	for {
		n, from, err := conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		rx := s.now()
		if reply := s.answer(buf[:n], rx); reply != nil {
			binary.BigEndian.PutUint64(reply[40:48], toNTP(s.now()))
			_, _ = conn.WriteTo(reply, from) // a lost reply is a lost datagram: the client asks again
		}
	}
}

func (s Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// answer returns the reply to req received at rx, its transmit time left
// for the caller to stamp, or nil for anything but a client request.
func (s Server) answer(req []byte, rx time.Time) []byte {
	if len(req) < 48 {
		return nil
	}
	vn, mode := req[0]>>3&7, req[0]&7
	if mode != 3 || vn < 1 || vn > 4 {
		return nil
	}
	stratum := s.Stratum
	if stratum == 0 {
		stratum = 1
	}
	r := make([]byte, 48)
	r[0] = 0<<6 | vn<<3 | 4 // no leap warning, the client's version, server
	r[1] = stratum
	r[2] = req[2]                                   // poll: as asked
	r[3] = 0xec                                     // precision 2^-20 s
	binary.BigEndian.PutUint32(r[8:12], 1<<16/1000) // root dispersion ~1 ms
	if stratum == 1 {
		copy(r[12:16], "LOCL")
	}
	binary.BigEndian.PutUint64(r[16:24], toNTP(rx)) // reference: now
	copy(r[24:32], req[40:48])                      // origin: the client's transmit
	binary.BigEndian.PutUint64(r[32:40], toNTP(rx))
	return r
}
