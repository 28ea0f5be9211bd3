//go:build unix

package measure

// This file reads this process's CPU time on Unix.

import (
	"time"

	"golang.org/x/sys/unix"
)

// CPU is this process's CPU time (user + system) so far; 0 if it cannot
// be read.
func CPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
