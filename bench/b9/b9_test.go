package b9

// This file tests B9's section of bench/RESULTS.md.

import (
	"strings"
	"testing"
)

func TestMarkdown(t *testing.T) {
	r := &Result{Config: Config{Records: 10, Backs: []int{1, 2, 4}, Runs: 1}, Samples: map[int][]Sample{
		1: {{Backs: 1, Rows: 10, RowsPerSec: 100, Back: 20_000}},
		2: {{Backs: 2, Rows: 10, RowsPerSec: 170, Back: 20_000}},
		4: {{Backs: 4, Rows: 10, RowsPerSec: 360, Back: 20_000}},
	}}
	if s := r.Speedup(4); s != 3.6 {
		t.Errorf("speedup of 4 backs %.2f, want 3.6", s)
	}
	md := r.Markdown()
	for _, want := range []string{"| 1 | 100 | 1.00 | – | – | 2.0 |", "| 2 | 170 | 1.70 | ≥ 1.8 | **no** | 2.0 |",
		"| 4 | 360 | 3.60 | ≥ 3.4 | yes | 2.0 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
}
