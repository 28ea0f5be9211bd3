package netio

// PendingPeak returns the most ack and nack text any of s's connections
// had pending at once, in bytes.
func PendingPeak(s *Source) int { return int(s.pendingPeak.Load()) }

// MaxLine is the longest reply line the source writes.
const MaxLine = maxNackLine
