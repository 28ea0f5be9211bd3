package engine

// This file tests the latency quantiles a stage reports per window.

import (
	"math"
	"testing"
)

func TestLatencyQuantiles(t *testing.T) {
	var l latency
	l.init()
	for i := 0; i < 99; i++ {
		l.observe(1_000_000) // 1 ms
	}
	l.observe(100_000_000) // 100 ms
	q := l.quantiles(0.5, 0.99, 1)
	if q[0] < 1 || q[0] > 1.2 || q[1] > 1.2 || q[2] < 100 || q[2] > 120 {
		t.Fatalf("quantiles %v", q)
	}
	for _, ns := range []int64{-5, 0, 7, 8, 9, 1 << 40, 1<<63 - 1} {
		if b := bucketOf(ns); b < 0 || b >= numBuckets || (ns > 0 && bucketUpper(b) < float64(ns)) {
			t.Errorf("bucketOf(%d) = %d (upper %v)", ns, b, bucketUpper(b))
		}
	}
}

// Two stages whose latencies differ by a few percent (a source's read to
// finish, and its sink's queue wait plus handling, inside it) get
// different quantiles: buckets fine enough, and interpolated within.
func TestLatencyQuantilesTellCloseStagesApart(t *testing.T) {
	var sink, source latency
	sink.init()
	source.init()
	for i := range int64(1000) {
		ns := 10_000_000 + i*20_000 // 10 ms to 30 ms
		sink.observe(ns)
		source.observe(ns + 500_000) // half a millisecond more
	}
	a, b := sink.quantiles(0.5, 0.99), source.quantiles(0.5, 0.99)
	for i, q := range []string{"p50", "p99"} {
		if !(b[i] > a[i]) {
			t.Errorf("%s: sink %.3f ms, source %.3f ms; want the source's above the sink's", q, a[i], b[i])
		}
		want := []float64{20.5, 30.3}[i]
		if d := b[i]/want - 1; d < -0.03 || d > 0.03 {
			t.Errorf("source %s %.3f ms, want within 3%% of %.1f", q, b[i], want)
		}
	}
}

// Windows without an observation have no quantiles: NaN, not 0, so that a
// stage that finishes nothing (stalled on its database) does not look fast.
func TestLatencyQuantilesWithoutObservationsAreNaN(t *testing.T) {
	var l latency
	l.init()
	for i, q := range l.quantiles(0.5, 0.99) {
		if !math.IsNaN(q) {
			t.Errorf("quantile %d of nothing observed: %v, want NaN", i, q)
		}
	}
	l.observe(2_000_000)
	if q := l.quantiles(0.5)[0]; q < 1.9 || q > 2.1 {
		t.Errorf("p50 of one 2 ms observation: %v ms", q)
	}
}
