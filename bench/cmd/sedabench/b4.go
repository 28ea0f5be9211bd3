package main

// This file is B4's entry in the suite: its flags and run.

import (
	"cmp"
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b4"
)

func b4Benchmark() *benchmark {
	var cfg b4.Config
	return &benchmark{
		Name:  "b4",
		Title: "B4: overload",
		Flags: func(f *pflag.FlagSet) {
			f.DurationVar(&cfg.Duration, "b4-duration", 0, "b4: overload duration (0: 30s)")
			f.Float64Var(&cfg.Factor, "b4-factor", 0, "b4: offered rate over the sustained maximum (0: 10)")
			f.IntVar(&cfg.Conns, "b4-conns", 0, "b4: client connections (0: 64)")
			f.StringVar(&cfg.Pipectl, "b4-pipectl", "", "b4: the pipectl binary to run (default: --pipectl, else go build ./cmd/pipectl)")
			f.BoolVar(&cfg.NoPerf, "b4-no-perf", false, "b4: skip the perf(1) profile of the pipeline process")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b4: running (overload)...")
			c := cfg
			c.DSN, c.Log, c.Pipectl = o.DSN, o.Log, cmp.Or(c.Pipectl, o.Pipectl)
			res, err := b4.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
