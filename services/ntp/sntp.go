package ntp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Sample is one server's answer.
type Sample struct {
	Server  string        `json:"server"`
	Offset  time.Duration `json:"offset"` // add to the local clock to get the server's
	Delay   time.Duration `json:"delay"`  // round trip, less the server's processing
	Stratum int           `json:"stratum"`
}

// ErrBadAnswer is wrapped by every answer the client rejects.
var ErrBadAnswer = errors.New("bad NTP answer")

// ntpEpoch is 1900-01-01, where NTP timestamps count from.
var ntpEpoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

func toNTP(t time.Time) uint64 {
	d := t.Sub(ntpEpoch) // fits: Duration covers 292 years
	sec := uint64(d / time.Second)
	frac := uint64(d%time.Second) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

func fromNTP(v uint64) time.Time {
	sec := time.Duration(v>>32) * time.Second
	frac := time.Duration((v & 0xffffffff) * uint64(time.Second) >> 32)
	return ntpEpoch.Add(sec + frac)
}

// query asks one server over conn (an SNTP client exchange, RFC 4330),
// timing it with now, the clock being disciplined.
func query(ctx context.Context, conn net.Conn, now func() time.Time) (Sample, error) {
	var req [48]byte
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, version 4, mode client
	// The transmit field carries a random cookie, not our clock: the
	// server echoes it as origin, which proves the answer is to us.
	if _, err := rand.Read(req[40:48]); err != nil {
		return Sample{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	t1 := now()
	if _, err := conn.Write(req[:]); err != nil {
		return Sample{}, err
	}
	var resp [128]byte
	for {
		n, err := conn.Read(resp[:])
		if err != nil {
			return Sample{}, err
		}
		t4 := now()
		if n < 48 || string(resp[24:32]) != string(req[40:48]) {
			continue // not the answer to this request
		}
		return parseAnswer(resp[:n], t1, t4)
	}
}

func parseAnswer(b []byte, t1, t4 time.Time) (Sample, error) {
	li, vn, mode, stratum := b[0]>>6, b[0]>>3&7, b[0]&7, int(b[1])
	switch {
	case mode != 4:
		return Sample{}, fmt.Errorf("%w: mode %d, want 4 (server)", ErrBadAnswer, mode)
	case vn < 3 || vn > 4:
		return Sample{}, fmt.Errorf("%w: version %d", ErrBadAnswer, vn)
	case stratum == 0:
		return Sample{}, fmt.Errorf("%w: kiss of death %q", ErrBadAnswer, b[12:16])
	case stratum > 15:
		return Sample{}, fmt.Errorf("%w: stratum %d (unsynchronised)", ErrBadAnswer, stratum)
	case li == 3:
		return Sample{}, fmt.Errorf("%w: server clock not synchronised (leap indicator 3)", ErrBadAnswer)
	}
	rx, tx := binary.BigEndian.Uint64(b[32:40]), binary.BigEndian.Uint64(b[40:48])
	if rx == 0 || tx == 0 {
		return Sample{}, fmt.Errorf("%w: zero timestamps", ErrBadAnswer)
	}
	t2, t3 := fromNTP(rx), fromNTP(tx)
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	delay := t4.Sub(t1) - t3.Sub(t2)
	if delay < 0 {
		delay = 0
	}
	return Sample{Offset: offset, Delay: delay, Stratum: stratum}, nil
}
