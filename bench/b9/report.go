package b9

// This file renders B9's result: the speedup per count of backs against
// its targets, and its section.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stagedserver/seda/bench/report"
)

// median returns the median of f over the samples of m backs.
func (r *Result) median(m int, f func(Sample) float64) float64 {
	var xs []float64
	for _, s := range r.Samples[m] {
		xs = append(xs, f(s))
	}
	return report.Median(xs)
}

// Speedup is the median rows/s of m backs over that of the fewest backs
// measured.
func (r *Result) Speedup(m int) float64 {
	rate := func(s Sample) float64 { return s.RowsPerSec }
	base := r.median(slices.Min(r.Config.Backs), rate)
	if base == 0 {
		return 0
	}
	return r.median(m, rate) / base
}

// speedupTarget is issue 18's B9 target for m backs (docs/BENCHMARKS.md):
// their rows/s over one back's; false when m has none.
func speedupTarget(m int) (float64, bool) {
	switch m {
	case 2:
		return 1.8, true
	case 4:
		return 3.4, true
	}
	return 0, false
}

// Markdown is B9's section of bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "%d records per run, %d runs of each back count, alternating; every statement takes %s (a statement trigger "+
		"that sleeps); each back pinned to batch %d and %d workers and connections; %d cores. A front fills the stream, then the "+
		"backs drain it; rows/s between 10%% and 90%% of the rows stored, CPU per row over the whole drain. Every run checks every "+
		"record stored once. Targets: 2 backs ≥ 1.8×, 4 backs ≥ 3.4× one back.\n\n",
		c.Records, c.Runs, c.Sleep, c.Batch, c.Workers, r.Cores)
	b.WriteString("| backs | rows/s (median) | × one back | target | met | backs µs/row | nats-server µs/row | PostgreSQL µs/row |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, m := range c.Backs {
		want, met := "–", "–"
		if w, ok := speedupTarget(m); ok {
			want, met = fmt.Sprintf("≥ %.1f", w), report.Met(r.Speedup(m) >= w)
		}
		fmt.Fprintf(&b, "| %d | %s | %.2f | %s | %s | %.1f | %.1f | %.1f |\n", m,
			report.Rate(r.median(m, func(s Sample) float64 { return s.RowsPerSec })), r.Speedup(m), want, met,
			r.median(m, func(s Sample) float64 { return s.PerRow(s.Back) }),
			r.median(m, func(s Sample) float64 { return s.PerRow(s.Nats) }),
			r.median(m, func(s Sample) float64 { return s.PerRow(s.PG) }))
	}
	b.WriteString("\n| run | backs | rows/s |\n| --- | --- | --- |\n")
	for _, m := range c.Backs {
		for i, s := range r.Samples[m] {
			fmt.Fprintf(&b, "| %d | %d | %s |\n", i+1, m, report.Rate(s.RowsPerSec))
		}
	}
	return b.String()
}
