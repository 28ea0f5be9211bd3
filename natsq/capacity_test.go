package natsq

// This file tests a stream's capacity in events: the tighter of its
// limits.

import "testing"

// A stream's capacity in events is the tighter of its limits. Counting
// max_msgs alone, a stream full at max_bytes (2 MiB, 47 stored bytes an
// event) showed a depth of 44,300 against a capacity of 33 million.
func TestCapacityIsTheTighterLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ns     Stats
		events uint64
		want   int
	}{
		{"full at max_bytes", Stats{MaxMsgs: 1_000_000, MaxBytes: 2 << 20, StreamMsgs: 44, StreamBytes: 2 << 20}, 44_300, 44_300},
		{"max_msgs the tighter", Stats{MaxMsgs: 10, MaxBytes: 1 << 30, StreamMsgs: 5, StreamBytes: 5000}, 5000, 10_000},
		{"empty: full envelopes", Stats{MaxMsgs: -1, MaxBytes: 1 << 20}, 0, 4 * 1024},
		{"no limits", Stats{MaxMsgs: -1, MaxBytes: -1}, 7, 0},
	} {
		if got := capacity(tc.ns, tc.events, DefaultEnvelopeEvents, DefaultEnvelopeBytes); got != tc.want {
			t.Errorf("%s: capacity %d, want %d", tc.name, got, tc.want)
		}
	}
}
