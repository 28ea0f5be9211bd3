package b10_test

// This file tests that a short soak runs whole (nacks, dropped
// connections, report and picture), and the slope of its trends.

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b10"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestSoakShort runs B10 for 8 s: Run checks that every acked id is
// stored, that no malformed record was acked, that every record was
// answered but on the connections dropped on purpose, and that the
// pipeline stayed up and drained cleanly. Here: malformed records were
// nacked, connections were dropped, and the report and picture are
// whole. No figure is asserted.
func TestSoakShort(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// 20% of the connections dropped, so that a short run drops some.
	res, err := b10.Run(ctx, b10.Config{Duration: 8 * time.Second, SustainDuration: 2 * time.Second, Round: 2 * time.Second,
		Conns: 16, DropConns: 0.2, Every: 500 * time.Millisecond, DSN: dsn, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked == 0 || res.Malformed == 0 || res.Nacked == 0 || res.Dropped == 0 || res.MalformedAcks != 0 {
		t.Fatalf("acked %d, malformed %d, nacked %d, dropped %d, malformed acked %d", res.Acked, res.Malformed, res.Nacked, res.Dropped, res.MalformedAcks)
	}
	if len(res.Samples) < 3 || res.Samples[0].RSS <= 0 || res.Samples[0].Goroutines <= 0 || res.Samples[0].Files <= 0 {
		t.Fatalf("samples %+v", res.Samples)
	}
	md := res.Markdown()
	for _, want := range []string{"| every acked id in the table | yes", "| goroutines |", "| open files |", "](b10.svg)"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	var svg bytes.Buffer
	if err := res.WriteSVG(&svg); err != nil || !strings.Contains(svg.String(), "open files") {
		t.Errorf("picture: %v", err)
	}
	t.Log("\n" + md)
}

func TestSlope(t *testing.T) {
	if s := b10.Slope([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}); s != 2 {
		t.Errorf("slope %v, want 2", s)
	}
	if s := b10.Slope([]float64{0, 1, 2}, []float64{5, 5, 5}); s != 0 {
		t.Errorf("slope %v, want 0", s)
	}
}

// tlog writes progress lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) { l.t.Log(strings.TrimSpace(string(b))); return len(b), nil }
