package main

// This file is B9's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b9"
)

func b9Benchmark() *benchmark {
	var cfg b9.Config
	return &benchmark{
		Name:  "b9",
		Title: "B9: scale-out across back processes against a latency-bound database",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b9-records", 0, "b9: records per run (0: 120,000)")
			f.IntSliceVar(&cfg.Backs, "b9-backs", nil, "b9: back counts (default 1,2,4)")
			f.DurationVar(&cfg.Sleep, "b9-sleep", 0, "b9: a statement's latency (0: 20ms)")
			f.StringVar(&cfg.LogDir, "b9-logs", "", "b9: keep each process's output in this directory")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b9: running (1, 2 and 4 backs, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log, c.Pipectl = o.Runs, o.DSN, o.Log, o.Pipectl
			res, err := b9.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
