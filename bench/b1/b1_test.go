package b1

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunSmall checks that every case runs and that Run reports one figure
// per run and side.
func TestRunSmall(t *testing.T) {
	rs, err := Run(context.Background(), Config{Runs: 2, Items: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(Cases()) {
		t.Fatalf("%d results, want %d", len(rs), len(Cases()))
	}
	for _, r := range rs {
		if len(r.PortItemsPerSec) != 2 || len(r.ChanItemsPerSec) != 2 || len(r.Ratios()) != 2 {
			t.Fatalf("%s: %+v", r.Case, r)
		}
	}
	md := Markdown(rs)
	for _, c := range Cases() {
		if !strings.Contains(md, "| "+c.Name+" |") {
			t.Errorf("no row for %s:\n%s", c.Name, md)
		}
	}
	if _, err := Run(context.Background(), Config{Cases: []string{"nope"}}); err == nil {
		t.Fatal("unknown case accepted")
	}
}

// TestGuardRails prints B1's guard rails when B1_RUNS is set.
func TestGuardRails(t *testing.T) {
	if os.Getenv("B1_RUNS") == "" {
		t.Skip("set B1_RUNS to measure B1's guard rails")
	}
	for range 3 {
		idle, err := IdleCPU(64, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("idle port, 64 waiting workers: %.3f%% of a core\n", idle*100)
	}
	for range 3 {
		pl, cl, err := Latency(200000, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("hand-off at half load: port p50 %v p99 %v; channel p50 %v p99 %v; p99 ratio %.2f\n",
			pl.P50, pl.P99, cl.P50, cl.P99, float64(pl.P99)/float64(cl.P99))
	}
}
