package main

// This file is B11's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b11"
)

func b11Benchmark() *benchmark {
	var cfg b11.Config
	return &benchmark{
		Name:  "b11",
		Title: "B11: upserts",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b11-records", 0, "b11: records per run (0: 1,000,000)")
			f.IntVar(&cfg.Keys, "b11-keys", 0, "b11: the upserts' key space (0: 100,000)")
			f.IntVar(&cfg.Conns, "b11-conns", 0, "b11: client connections (0: 64)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b11: running (B3's pipeline, conflict: ignore and conflict: update, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log = o.Runs, o.DSN, o.Log
			res, err := b11.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
