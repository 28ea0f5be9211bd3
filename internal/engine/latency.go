package engine

// This file holds the latency histograms of a stage's /stats figures.

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/internal/track"
)

// latency is a lock-free histogram of durations with log-linear buckets
// (32 per power of two, so a quantile is within about 3% of the truth;
// within a bucket it is interpolated). It
// keeps two windows of latencyWindow each and reports the last full window
// together with the current one, so /stats shows recent latency rather than
// the whole run's.
type latency struct {
	cur     atomic.Pointer[histogram]
	prev    atomic.Pointer[histogram]
	started atomic.Int64 // nanotime when cur began
}

const (
	subBits       = 5
	subBuckets    = 1 << subBits
	numBuckets    = 64 * subBuckets
	latencyWindow = 10 * time.Second
)

type histogram struct {
	counts [numBuckets]atomic.Uint64
}

func (l *latency) init() {
	l.cur.Store(new(histogram))
	l.prev.Store(new(histogram))
	l.started.Store(track.Nanotime())
}

func bucketOf(ns int64) int {
	if ns < subBuckets {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	u := uint64(ns)
	exp := bits.Len64(u) - 1 // u in [2^exp, 2^(exp+1))
	sub := int(u>>(exp-subBits)) & (subBuckets - 1)
	return exp*subBuckets + sub
}

// bucketUpper returns the upper bound in ns of bucket b.
func bucketUpper(b int) float64 {
	if b < subBuckets {
		return float64(b + 1)
	}
	exp, sub := b/subBuckets, b%subBuckets
	return float64(uint64(subBuckets+sub+1) << (exp - subBits))
}

func (l *latency) observe(ns int64) { l.observeN(ns, 1) }

// observeN records n observations of ns at the cost of one.
func (l *latency) observeN(ns int64, n uint64) {
	l.cur.Load().counts[bucketOf(ns)].Add(n)
}

// rotate starts a new window when the current one is full. Observations
// racing with it may land in the window being retired: a small error that
// buys a lock-free observe.
func (l *latency) rotate() {
	now := track.Nanotime()
	st := l.started.Load()
	if now-st < int64(latencyWindow) || !l.started.CompareAndSwap(st, now) {
		return
	}
	l.prev.Store(l.cur.Load())
	l.cur.Store(new(histogram))
}

// count returns how many observations the two windows hold.
func (l *latency) count() uint64 {
	var n uint64
	for _, h := range []*histogram{l.prev.Load(), l.cur.Load()} {
		for i := range h.counts {
			n += h.counts[i].Load()
		}
	}
	return n
}

// quantiles returns the given quantiles (0..1) in milliseconds over the
// last window and the current one; NaN when nothing was observed, as
// Prometheus has it for a summary without observations: a stage that
// finishes nothing (a stalled database) has no latency to tell, and a 0
// would read as a fast stage. (NaN ends a p99 alert as surely as 0 did:
// the stall's own signal is the oldest event's age.)
func (l *latency) quantiles(qs ...float64) []float64 {
	l.rotate()
	var sum [numBuckets]uint64
	var total uint64
	for _, h := range []*histogram{l.prev.Load(), l.cur.Load()} {
		for i := range h.counts {
			c := h.counts[i].Load()
			sum[i] += c
			total += c
		}
	}
	out := make([]float64, len(qs))
	if total == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	for qi, q := range qs {
		rank := uint64(q*float64(total) + 0.5)
		if rank < 1 {
			rank = 1
		}
		// Linear interpolation within the bucket that holds the rank, by
		// the rank's place among its counts: a bucket's bound would show
		// two stages whose latencies differ by less than a bucket's width
		// (12%) with the same figure to the last digit.
		var seen uint64
		for b := range sum {
			if seen+sum[b] >= rank {
				lo := 0.0
				if b > 0 {
					lo = bucketUpper(b - 1)
				}
				frac := float64(rank-seen) / float64(sum[b])
				out[qi] = (lo + (bucketUpper(b)-lo)*frac) / 1e6
				break
			}
			seen += sum[b]
		}
	}
	return out
}
