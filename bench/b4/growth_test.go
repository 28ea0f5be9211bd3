package b4_test

import (
	"testing"
	"time"

	"github.com/stagedserver/seda/bench/b4"
)

func TestGrowth(t *testing.T) {
	samples := func(rss func(i int) int64) []b4.MemSample {
		var ms []b4.MemSample
		for i := range 30 {
			ms = append(ms, b4.MemSample{At: time.Duration(i+1) * time.Second, RSS: rss(i)})
		}
		// A sample after sending stopped does not count.
		return append(ms, b4.MemSample{At: 31 * time.Second, RSS: 1 << 40})
	}
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		rss   func(i int) int64
		grows bool
	}{
		{"flat", func(int) int64 { return 100 * mib }, false},
		{"one spike at the end", func(i int) int64 { return map[bool]int64{true: 200 * mib, false: 100 * mib}[i == 29] }, false},
		{"sawtooth", func(i int) int64 { return int64(100+10*(i%3)) * mib }, false},
		{"rising", func(i int) int64 { return int64(100+4*i) * mib }, true},
	} {
		r := &b4.Result{Config: b4.Config{Duration: 30 * time.Second}, Mem: samples(tc.rss)}
		g, ok := r.Growth()
		if !ok || g.Grows != tc.grows {
			t.Errorf("%s: %+v, ok %v; want grows %v", tc.name, g, ok, tc.grows)
		}
		if tc.name == "rising" && (g.Slope < 200*mib || g.Slope > 280*mib) {
			t.Errorf("rising: slope %.0f MiB/min, want 240", g.Slope/mib)
		}
	}
}
