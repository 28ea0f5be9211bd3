package main

// This file is the suite's entry for B4 with admission control, a
// section of its own.

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b4"
)

// b4aBenchmark is B4 rerun with admission control on the source: a section
// of its own, so that RESULTS.md keeps both.
func b4aBenchmark() *benchmark {
	cfg := b4.Config{Admission: 250 * time.Millisecond}
	return &benchmark{
		Name:  "b4a",
		Title: "B4 with admission control: overload",
		Flags: func(f *pflag.FlagSet) {
			// 90 s, not B4's 30: under admission the live heap swings with
			// what is admitted, and a third of 30 s was too short to tell a
			// trend from a database slowing for a few seconds (RESULTS.md,
			// B4: notes).
			f.DurationVar(&cfg.Duration, "b4a-duration", 90*time.Second, "b4a: overload duration")
			f.DurationVar(&cfg.Admission, "b4a-target", 250*time.Millisecond, "b4a: the source's admission target")
			f.BoolVar(&cfg.NoPerf, "b4a-no-perf", false, "b4a: skip the perf(1) profile of the pipeline process")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b4a: running (overload, with admission control)...")
			c := cfg
			c.DSN, c.Log, c.Pipectl = o.DSN, o.Log, o.Pipectl
			res, err := b4.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
