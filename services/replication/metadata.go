package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Metadata is what the backing device's internal DRBD metadata area
// holds.
type Metadata int

const (
	// NoMetadata: no DRBD superblock; create-md is needed.
	NoMetadata Metadata = iota
	// Metadata84: DRBD 8.4 metadata (clean or unclean).
	Metadata84
	// Metadata09: DRBD 9 metadata, which the 8.4 module cannot use; it is
	// what drbd-utils 9 writes when it runs before the 8.4 module is
	// loaded.
	Metadata09
)

func (m Metadata) String() string {
	return [...]string{"none", "v08", "v09"}[m]
}

// ErrMetadata09 is returned when the backing device holds DRBD 9
// metadata.
var ErrMetadata09 = errors.New("backing device has DRBD 9 (v09) metadata, which the 8.4 module cannot use")

// Superblock magics (drbd_int.h / drbdmeta.c): DRBD_MAGIC + 4 for v08,
// + 5 for v08 not cleanly detached (8.4), + 6 for v09.
const (
	magic08        = 0x8374026b
	magic84Unclean = 0x8374026c
	magic09        = 0x8374026d
)

// ReadMetadata reports which DRBD metadata the backing device (or image
// file) r of size bytes holds in its internal metadata area. Internal
// metadata's superblock is the last 4 KiB-aligned 4 KiB block; its magic
// is the big-endian 32-bit word at byte 60 (after la_size_sect, four
// UUIDs, device_uuid, a reserved word and flags).
//
// This replaces asking drbdadm: "drbdadm dump-md" refuses while the
// device is attached and its exit status does not tell "no metadata" from
// "cannot open the device", and "create-md" on existing metadata prompts
// or, forced, overwrites the generation identifiers. Reading the magic is
// one pread with three possible answers.
func ReadMetadata(r io.ReaderAt, size int64) (Metadata, error) {
	if size < 128<<10 {
		return NoMetadata, fmt.Errorf("backing device of %d bytes is too small for DRBD metadata", size)
	}
	off := (size&^4095 - 4096) + 60
	var b [4]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return NoMetadata, fmt.Errorf("read superblock at %d: %w", off, err)
	}
	switch binary.BigEndian.Uint32(b[:]) {
	case magic08, magic84Unclean:
		return Metadata84, nil
	case magic09:
		return Metadata09, nil
	}
	return NoMetadata, nil
}

// DiskMetadata opens the backing device at path and reads its metadata
// kind (see ReadMetadata).
func DiskMetadata(path string) (Metadata, error) {
	f, err := os.Open(path)
	if err != nil {
		return NoMetadata, fmt.Errorf("metadata: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return NoMetadata, fmt.Errorf("metadata %s: size: %w", path, err)
	}
	m, err := ReadMetadata(f, size)
	if err != nil {
		return m, fmt.Errorf("metadata %s: %w", path, err)
	}
	return m, nil
}
