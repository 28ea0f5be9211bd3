package measure

// This file reads this process's CPU time on Windows.

import (
	"syscall"
	"time"
)

// CPU is this process's CPU time (user + kernel) so far; 0 if it cannot
// be read.
func CPU() time.Duration {
	current, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(current, &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	// FILETIME durations count 100 ns intervals.
	ticks := func(f syscall.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration(ticks(kernel)+ticks(user)) * 100
}
