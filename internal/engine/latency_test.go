package engine

import "testing"

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
