package loadgen

// This file holds the latency Histogram: logarithmic buckets, merged
// across connections, read as quantiles.

import (
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of
// two, so a quantile is off by at most 1/2^subBits (about 1.6%).
const subBits = 6

const histBuckets = (64 - subBits + 1) << subBits

// Histogram counts durations in logarithmic buckets. The zero value is
// empty and ready to use; it is not safe for concurrent use.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

func bucketOf(ns int64) int {
	if ns < 1<<subBits {
		if ns < 0 {
			ns = 0
		}
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - subBits - 1 // shift that leaves subBits+1 bits
	return (e+1)<<subBits + int(uint64(ns)>>e) - 1<<subBits
}

// lowerOf is the smallest value of bucket b.
func lowerOf(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	m := int64(b&(1<<subBits-1)) + 1<<subBits
	return m << e
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
	h.max = max(h.max, int64(d))
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the q-quantile (0 < q <= 1) of the recorded durations,
// as the middle of its bucket; 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen > rank {
			lo, hi := lowerOf(b), lowerOf(b+1)
			return time.Duration(min((lo+hi)/2, h.max))
		}
	}
	return time.Duration(h.max)
}

// Max is the longest duration recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }
