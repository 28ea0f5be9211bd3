package b6_test

// This file tests that a short B6 runs whole: acked rows stored, only busy
// shed, report and picture.

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b6"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestRunShort runs B6 briefly: every acked row must be stored (Run checks
// it), the admission run must shed only busy, and the report and the
// picture must be whole. No figure is asserted.
func TestRunShort(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := b6.Run(ctx, b6.Config{Duration: 2 * time.Second, BaselineDuration: time.Second, SustainDuration: time.Second,
		Conns: 4, Window: 2000, Sleep: 10 * time.Millisecond, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	a := res.Admission
	if res.Sustained <= 0 || a.Sent == 0 || a.Acked == 0 || !a.OnlyBusy() || a.Unanswered() != 0 || len(a.Samples) == 0 {
		t.Fatalf("sustained %.0f; admission run %+v", res.Sustained, a)
	}
	md := res.Markdown()
	for _, want := range []string{"| with admission |", "| acked rows/s ≥", "only busy nacks", "](b6.svg)"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	var svg strings.Builder
	if err := res.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), "admitted rate") {
		t.Errorf("picture lacks the admitted rate")
	}
}
