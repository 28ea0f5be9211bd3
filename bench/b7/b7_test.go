package b7

// This file tests B7's worked estimate and its section.

import (
	"strings"
	"testing"
)

func TestEstimate(t *testing.T) {
	c := Costs{Front: 10, Back: 20, Nats: 5, PG: 8}
	// 8 cores at 50%: a front 400k rows/s, a back 200k, NATS 800k, PG 500k.
	for _, tc := range []struct {
		n, m  int
		rows  float64
		bound string
	}{
		{1, 1, 200_000, "backs"},
		{1, 4, 400_000, "fronts"},
		{4, 4, 500_000, "PostgreSQL"},
	} {
		rows, bound := Estimate(c, tc.n, tc.m, 8, 0.5)
		if rows != tc.rows || bound != tc.bound {
			t.Errorf("%d fronts, %d backs: %.0f bound by %s; want %.0f by %s", tc.n, tc.m, rows, bound, tc.rows, tc.bound)
		}
	}
}

func TestMarkdown(t *testing.T) {
	r := &Result{Config: Config{Records: 10, Conns: 1, Runs: 1}, Samples: map[string][]Sample{
		Single:   {{Rows: 10, RowsPerSec: 100, Front: 100_000, PG: 50_000}},
		Split:    {{Rows: 10, RowsPerSec: 50, Front: 100_000, Back: 100_000, Nats: 100_000, PG: 50_000, Poll: 20_000}},
		Embedded: {{Rows: 10, RowsPerSec: 80, Front: 150_000, PG: 50_000}},
	}}
	md := r.Markdown()
	for _, want := range []string{"| rows/s (median) | 100 | 50 | 80 | 0.50 | 0.80 |", "Worked estimate", "| 8 | 4 |",
		"| split ÷ single, rows/s | ≥ 0.6 | 0.50× | **no** |", "| embedded ÷ single, rows/s | ≥ 0.7 | 0.80× | yes |",
		"| PostgreSQL CPU per row, split ÷ single | ≤ 1.2 | 1.00× | yes |",
		"| 1 | split | 50 | 10.0 | 10.0 | 10.0 | 5.0 | 2.0 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
}
