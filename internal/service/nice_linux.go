package service

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetNice gives every thread of process group pgid (0: the caller's) the
// nice value n. Linux keeps the value per thread and setpriority's
// PRIO_PROCESS reaches only the thread whose ID it is given, while a Go
// process runs several threads from its first instruction; PRIO_PGRP
// reaches every thread of every process in the group, and a thread or
// process started later inherits the value of the one that started it.
// The process should lead its own group (started with Setsid, as PID 1
// and the mail container start theirs), or the others in it change too.
func SetNice(pgid, n int) error {
	if err := unix.Setpriority(unix.PRIO_PGRP, pgid, n); err != nil {
		return fmt.Errorf("set nice %d on process group %d: %w", n, pgid, err)
	}
	return nil
}
