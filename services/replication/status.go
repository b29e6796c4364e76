package replication

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Status is one resource's state as drbdsetup events2 reports it (for a
// single-volume resource with one peer, as tandem's are).
type Status struct {
	// Up is false when the kernel does not know the resource (down).
	Up bool
	// Role is the local role: Primary, Secondary or Unknown.
	Role string
	// Suspended is "no" unless I/O is frozen (for instance while the
	// fence-peer handler runs, or after it failed).
	Suspended string
	// Disk is the local disk state: UpToDate, Inconsistent, Outdated,
	// Diskless, ...
	Disk string
	// Connection is the connection state: Connected, Connecting,
	// StandAlone, ...
	Connection string
	// Replication is the replication state: Established, SyncSource,
	// SyncTarget, Off, ...
	Replication string
	// PeerRole is the peer's role as last seen: Primary, Secondary or
	// Unknown.
	PeerRole string
	// PeerDisk is the peer's disk state as last seen; DUnknown when
	// disconnected.
	PeerDisk string
	// OutOfSyncKiB is how much data the peer lacks (needs --statistics).
	OutOfSyncKiB uint64
}

// Connected reports whether the peer is connected and both disks are
// UpToDate: a promotion now loses nothing and a failover target exists.
func (s Status) Connected() bool {
	return s.Connection == "Connected" && s.Disk == "UpToDate" && s.PeerDisk == "UpToDate"
}

// ParseEvents2 reads the output of "drbdsetup events2 --now --statistics
// RESOURCE" (lines "exists OBJECT key:value..." ending with "exists -")
// and returns the state of resource. No line about resource means it is
// down: Status{Up: false}.
func ParseEvents2(r io.Reader, resource string) (Status, error) {
	var s Status
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1] == "-" {
			continue
		}
		if f[0] != "exists" && f[0] != "change" && f[0] != "create" {
			continue
		}
		kv := map[string]string{}
		for _, p := range f[2:] {
			if k, v, ok := strings.Cut(p, ":"); ok {
				kv[k] = v
			}
		}
		if kv["name"] != resource {
			continue
		}
		s.Up = true
		if err := s.apply(f[1], kv); err != nil {
			return s, fmt.Errorf("events2 %s: %w", resource, err)
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("events2 %s: %w", resource, err)
	}
	return s, nil
}

// apply sets the fields one events2 object carries.
func (s *Status) apply(object string, kv map[string]string) error {
	set := func(dst *string, key string) {
		if v, ok := kv[key]; ok {
			*dst = v
		}
	}
	switch object {
	case "resource":
		set(&s.Role, "role")
		set(&s.Suspended, "suspended")
	case "device":
		set(&s.Disk, "disk")
	case "connection":
		set(&s.Connection, "connection")
		set(&s.PeerRole, "role")
	case "peer-device":
		set(&s.Replication, "replication")
		set(&s.PeerDisk, "peer-disk")
		if v, ok := kv["out-of-sync"]; ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("out-of-sync %q: %w", v, err)
			}
			s.OutOfSyncKiB = n
		}
	}
	return nil
}
