package b3_test

// This file tests that every B3 variant runs and stores each record once.

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b3"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestRunTiny runs every variant once on a few records: every record must
// be acked and stored once (Run checks it and fails otherwise).
func TestRunTiny(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b3.Run(ctx, b3.Config{
		Records: 2000, NaiveRecords: 300, Conns: 4, Window: 100, Runs: 1, LatencyRecords: 400, DSN: dsn,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{b3.Pipeline, b3.Copy, b3.Chan, b3.Naive} {
		ss := res.Samples[v]
		if len(ss) != 1 {
			t.Fatalf("%s: %d samples, want 1", v, len(ss))
		}
		want := int64(2000)
		if v == b3.Naive {
			want = 300
		}
		if ss[0].Rows != want || ss[0].RowsPerSec <= 0 {
			t.Errorf("%s: %+v, want %d rows", v, ss[0], want)
		}
	}
	for _, v := range []string{b3.Pipeline, b3.Chan} {
		if l := res.Latency[v]; l.P99 <= 0 || l.P50 > l.P99 {
			t.Errorf("%s latency: %+v", v, l)
		}
	}
	md := res.Markdown()
	for _, want := range []string{"| pipeline / baseline |", "| copy |", "| naive |", "| chan |", "p99", "PostgreSQL's CPU per row fed by the pipeline"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
