package b5_test

// This file tests a tiny B5 and how settling is read from knob samples.

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b5"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestRunTiny runs the three variants once on a few records: every record
// must be acked and stored once (Run checks it), and the report has its
// tables.
func TestRunTiny(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b5.Run(ctx, b5.Config{Records: 4000, Conns: 4, Window: 200, Runs: 1, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{b5.Untuned, b5.Tuned, b5.Copy} {
		if ss := res.Samples[v]; len(ss) != 1 || ss[0].Rows != 4000 || ss[0].RowsPerSec <= 0 {
			t.Errorf("%s: %+v", v, ss)
		}
	}
	md := res.Markdown()
	for _, want := range []string{"| untuned / baseline |", "| tuned |", "| copy4 |", "store workers"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSettle(t *testing.T) {
	s := b5.Sample{Knobs: []b5.KnobSample{
		{At: 100 * time.Millisecond, StoreBatch: 1024, StoreWorkers: 2},
		{At: 200 * time.Millisecond, StoreBatch: 1024, StoreWorkers: 3},
		{At: 300 * time.Millisecond, StoreBatch: 1024, StoreWorkers: 5},
		{At: 400 * time.Millisecond, StoreBatch: 1024, StoreWorkers: 4},
		{At: 500 * time.Millisecond, StoreBatch: 1024, StoreWorkers: 5, StoreDecisions: 6},
	}}
	st, ok := s.Settle()
	if !ok || st.After != 300*time.Millisecond || st.StoreWorkers != 5 || st.WorkersMin != 4 || st.WorkersMax != 5 || st.Decisions != 6 {
		t.Fatalf("Settle = %+v", st)
	}
}
