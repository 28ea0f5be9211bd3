package b2

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestRun checks that both sides move every item; with B2_ITEMS set it
// runs the full benchmark and logs the figures (go test -v -run TestRun).
func TestRun(t *testing.T) {
	cfg := Config{Items: 20_000, Runs: 1}
	if s := os.Getenv("B2_ITEMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg = Config{Items: n}
		if r, err := strconv.Atoi(os.Getenv("B2_RUNS")); err == nil {
			cfg.Runs = r
		}
		if b, err := strconv.Atoi(os.Getenv("B2_BATCH")); err == nil {
			cfg.Batch = b
		}
		if c, err := strconv.Atoi(os.Getenv("B2_CONC")); err == nil {
			cfg.Concurrency = c
		}
	}
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2*max(cfg.Runs, 1) {
		t.Fatalf("%d results", len(rs))
	}
	for _, r := range rs {
		t.Logf("%-8s run %d: %d items in %v: %.0f items/s, %.0f CPU ns/item", r.Side, r.Run, r.Items, r.Took, r.ItemsPerSec(), r.CPUNsPerItem())
	}
	for _, side := range []string{Pipeline, Channels} {
		s := Summarize(rs, side)
		t.Logf("%-8s min %.0f median %.0f max %.0f items/s", side, s.Min, s.Median, s.Max)
	}
	t.Logf("ratio (median pipeline / median channels): %.2f (target %.1f)", Ratio(rs), Target)
	t.Logf("CPU ns/item, median: pipeline %.0f, channels %.0f", medianCPU(rs, Pipeline), medianCPU(rs, Channels))
}

func medianCPU(rs []Result, side string) float64 {
	var v []float64
	for _, r := range rs {
		if r.Side == side {
			v = append(v, r.CPUNsPerItem())
		}
	}
	slices.Sort(v)
	return v[len(v)/2]
}
