package b4_test

// This file tests how B4 tells memory growth from a leak.

import (
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/bench/b4"
	"github.com/stagedserver/seda/bench/report"
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

// TestGrowthLive: RSS rising while the live heap (half the next GC goal)
// stays flat is no leak; a live heap rising with time is one.
func TestGrowthLive(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		goal  func(i int) uint64
		leaks bool
	}{
		{"flat", func(i int) uint64 { return uint64(160+20*(i%2)) * mib }, false},
		{"rising", func(i int) uint64 { return uint64(160+8*i) * mib }, true},
		// One collection after a burst late in the run is no leak; nor is
		// a live heap that swings with what is in flight, its last third
		// drawing more of the high seconds (B4a's, 2026-12-06).
		{"one burst at the end", func(i int) uint64 { return map[bool]uint64{true: 220 * mib, false: 160 * mib}[i == 27] }, false},
		{"swings", func(i int) uint64 {
			goals := [...]uint64{47, 31, 70, 66, 54, 48, 57, 35, 53, 32, 60, 77, 30, 33, 34, 40, 44, 31, 37, 70, 63, 65, 48, 33, 32, 67, 63, 82, 57, 35}
			return 2 * goals[i] * mib
		}, false},
		// A floor rising by 1 MiB a second under the same swings is a leak.
		{"swings over a rising floor", func(i int) uint64 {
			return uint64(2*(30+i)+40*(i%2)) * mib
		}, true},
		// /metrics unread in the last third: not measured, so not flat.
		{"unread", func(i int) uint64 { return map[bool]uint64{true: 160 * mib}[i < 20] }, false},
	} {
		var ms []b4.MemSample
		for i := range 30 {
			ms = append(ms, b4.MemSample{At: time.Duration(i+1) * time.Second, RSS: int64(100+4*i) * mib, HeapGoal: tc.goal(i)})
		}
		r := &b4.Result{Config: b4.Config{Duration: 30 * time.Second}, Mem: ms}
		g, ok := r.Growth()
		if tc.name == "unread" {
			if g.LiveKnown || strings.Contains(r.Markdown(), "no leak") {
				t.Errorf("unread: %+v; want the live heap not measured, nor reported", g)
			}
			continue
		}
		if !ok || !g.Grows || !g.LiveKnown || g.LiveGrows != tc.leaks || g.MidLiveMax < g.MidLive || g.MidLive < 15*mib {
			t.Errorf("%s: %+v, ok %v; want RSS growing, live heap growing %v", tc.name, g, ok, tc.leaks)
		}
		var line string
		for l := range strings.Lines(r.Markdown()) {
			if strings.Contains(l, "no leak") {
				line = l
			}
		}
		if line == "" || strings.Contains(line, report.Met(false)) != tc.leaks {
			t.Errorf("%s: the report's line on the live heap is %q", tc.name, line)
		}
	}
}
