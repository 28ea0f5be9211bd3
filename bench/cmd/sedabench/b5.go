package main

// This file is B5's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b5"
)

func b5Benchmark() *benchmark {
	var cfg b5.Config
	return &benchmark{
		Name:  "b5",
		Title: "B5: defaults against tuning",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b5-records", 0, "b5: records per run (0: 1,000,000)")
			f.IntVar(&cfg.Conns, "b5-conns", 0, "b5: client connections (0: 64)")
			f.IntVar(&cfg.Copies, "b5-copies", 0, "b5: parallel psql \\copy processes (0: 4)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b5: running (untuned pipeline, tuned pipeline and parallel \\copy, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log = o.Runs, o.DSN, o.Log
			res, err := b5.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
