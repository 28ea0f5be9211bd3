//go:build !unix && !windows

package measure

import "time"

// CPU is 0: this system has no process CPU time to read.
func CPU() time.Duration { return 0 }
