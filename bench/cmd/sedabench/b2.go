package main

// This file is B2's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b2"
)

func b2Benchmark() *benchmark {
	var cfg b2.Config
	return &benchmark{
		Name:  "b2",
		Title: "B2: a three-stage chain against the same chain built from channels",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Items, "b2-items", 0, "b2: items per run (0: 1,000,000)")
			f.IntVar(&cfg.Batch, "b2-batch", 0, "b2: events a framework worker takes at once (0: 64)")
			f.IntVar(&cfg.Concurrency, "b2-concurrency", 0, "b2: the framework's run slots per stage (0: GOMAXPROCS)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b2: running (pipeline against channels, alternating)...")
			c := cfg
			c.Runs = o.Runs
			rs, err := b2.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return b2.Markdown(rs), nil
		},
	}
}
