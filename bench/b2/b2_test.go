package b2

import (
	"context"
	"strings"
	"testing"
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
