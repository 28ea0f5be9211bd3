package b2

// This file tests that B2's sides move every item and report, and the
// framework's allocations per item.

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRun checks that both sides move every item (each run checks the sum
// of what arrived) and that the report has both sides and the ratio.
func TestRun(t *testing.T) {
	rs, err := Run(context.Background(), Config{Items: 20_000, Runs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || len(Rates(rs, Pipeline)) != 2 || len(RunRatios(rs)) != 2 {
		t.Fatalf("results: %+v", rs)
	}
	md := Markdown(rs)
	for _, want := range []string{"| pipeline |", "| channels |", "Ratio pipeline / channels"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in:\n%s", want, md)
		}
	}
}

// TestAllocsPerItem asserts what B2's comparison rests on: the framework
// allocates per item what the hand-written chain does, the record itself
// (about 1.005 against 1.000, measured, with the race detector too), and
// nothing per hop or per item in its queues, stats or histograms: an
// allocation per hop would add 3 per item. Allocation counts do not move
// with the machine's load. B2's throughput target is the benchmark's to
// report (make bench), not a test's: on a shared machine a throughput
// ratio measures the neighbours as much as the framework.
func TestAllocsPerItem(t *testing.T) {
	const items = 50_000
	perItem := func(run func(context.Context, Config) (time.Duration, error)) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := run(context.Background(), Config{Items: items}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / items
	}
	p, c := perItem(RunPipeline), perItem(RunChannels)
	if p > c+0.1 {
		t.Errorf("the framework allocates %.3f times per item, the channels %.3f: want at most 0.1 more", p, c)
	}
}
