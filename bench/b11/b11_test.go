package b11_test

// This file runs the held-out check of issue 24 (scaled down unless
// -b11.full) and a tiny B11.

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b11"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

// full runs the held-out check at the size (16 connections,
// 400,000 updates over 4,000 keys) instead of a scaled-down one.
var full = flag.Bool("b11.full", false, "run the held-out check at full size")

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// The held-out check of issue 24, scaled down unless -b11.full: every
// update acked, every key at seq 99 with its record, with method copy,
// with method insert, and with insert and batch 1.
func TestHeldOut(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  b11.HeldOutConfig
	}{
		{"copy", b11.HeldOutConfig{Keys: 480}},
		{"insert", b11.HeldOutConfig{Keys: 480, Method: "insert"}},
		{"insert batch 1", b11.HeldOutConfig{Keys: 32, Method: "insert", Batch: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if *full {
				cfg.Keys = 0
			}
			dsn := cluster.NewDatabase(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			start := time.Now()
			res, err := b11.HeldOut(ctx, dsn, "heldout", cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d updates acked in %v", res.Acked, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestRunTiny runs B11 once on a few records: Run checks every run (every
// record acked, every key at its last update) and fails otherwise.
func TestRunTiny(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b11.Run(ctx, b11.Config{Records: 4000, Keys: 300, Conns: 4, Window: 100, Runs: 2, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{b11.Ignore, b11.Update} {
		if ss := res.Samples[v]; len(ss) != 2 || ss[0].Rows != 4000 || ss[0].RowsPerSec <= 0 {
			t.Errorf("%s: %+v, want 2 runs of 4000 rows", v, ss)
		}
	}
	md := res.Markdown()
	for _, want := range []string{"| update / ignore |", "| ignore |", "| update |", "≥ 0.5"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
