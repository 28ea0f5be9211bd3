package main

// This file is B8's entry in the suite: its flags and run.

import (
	"cmp"
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b8"
)

func b8Benchmark() *benchmark {
	var cfg b8.Config
	noProfile := false
	return &benchmark{
		Name:  "b8",
		Title: "B8: light rows",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b8-records", 0, "b8: messages per run (0: 1,000,000)")
			f.IntVar(&cfg.Conns, "b8-conns", 0, "b8: TCP connections and psql processes (0: 4)")
			f.StringSliceVar(&cfg.Contenders, "b8-contenders", nil, "b8: a subset of the contenders (default all)")
			f.StringVar(&cfg.Pipectl, "b8-pipectl", "", "b8: the pipectl binary to run (default: --pipectl, else go build ./cmd/pipectl)")
			f.BoolVar(&noProfile, "b8-no-profile", false, "b8: skip the perf(1) profile of the pipeline's first run")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b8: running (the README's syslog pipeline, 4 psql \\copy, rsyslog ompgsql, the JSON pipeline, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log, c.Profile = o.Runs, o.DSN, o.Log, !noProfile
			c.Pipectl = cmp.Or(c.Pipectl, o.Pipectl)
			res, err := b8.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
