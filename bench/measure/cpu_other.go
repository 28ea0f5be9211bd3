//go:build !unix && !windows

package measure

// This file holds CPU where the system has no process CPU time: 0.

import "time"

// CPU is 0: this system has no process CPU time to read.
func CPU() time.Duration { return 0 }
