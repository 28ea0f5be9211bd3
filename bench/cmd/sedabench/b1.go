package main

// This file is B1's entry in the suite: its flags, and its run with the
// guard rails.

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b1"
)

func b1Benchmark() *benchmark {
	var cfg b1.Config
	tries := 0
	return &benchmark{
		Name:  "b1",
		Title: "B1: port hop against a buffered channel",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Items, "b1-items", 0, "b1: items per run instead of runs of --b1-round (0: runs of --b1-round)")
			f.StringSliceVar(&cfg.Cases, "b1-cases", nil, "b1: cases to run (default all: 1P1W,2P2W,1P64W-C2,2P2W-Batch64)")
			f.IntVar(&cfg.Slices, "b1-slices", 0, "b1: take each side's round as this many alternating slices (0: 12; 1: one window per side, as the held-out check)")
			f.IntVar(&tries, "b1-guard-tries", 0, "b1: tries of each guard rail (0: 3)")
			f.DurationVar(&cfg.Round, "b1-round", 0, "b1: how long each run lasts per side, the producers sending until then (0: 120ms, unless --b1-items); --runs 0 means 11 runs")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b1: running (port against channel, alternating)...")
			c := cfg
			c.Runs = o.Runs
			rs, err := b1.Run(ctx, c)
			if err != nil {
				return "", err
			}
			fmt.Fprintln(o.Log, "b1: guard rails (allocations, idle CPU, hand-off latency at half load)...")
			g, err := b1.MeasureGuards(ctx, cmp.Or(tries, 3), 200_000, time.Second)
			if err != nil {
				return "", err
			}
			md := b1.Markdown(rs)
			if c.Items <= 0 || c.Round > 0 {
				md += fmt.Sprintf("\nEach run lasted %v per side (--b1-round): the producers sent until then", cmp.Or(c.Round, b1.DefaultRound))
				if n := cmp.Or(c.Slices, b1.DefaultSlices); n > 1 {
					md += fmt.Sprintf(", in %d slices per side, the two sides' slices alternating (--b1-slices; 1 runs one window per side, as the held-out check does)", n)
				} else {
					md += ", one window per side, as the held-out check runs it"
				}
				md += ".\n"
			} else {
				md += fmt.Sprintf("\nEach run moved %d items (--b1-items).\n", c.Items)
			}
			return md + "\nGuard rails (the idle CPU is also asserted by bench/b1's TestIdleCPU, the allocations by port's TestNoAllocs):\n\n" + g.Markdown(), nil
		},
	}
}
