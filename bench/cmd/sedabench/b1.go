package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b1"
)

func b1Benchmark() *benchmark {
	var cfg b1.Config
	return &benchmark{
		Name:  "b1",
		Title: "B1: port hop against a buffered channel",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Items, "b1-items", 0, "b1: items per run (0: 1<<20)")
			f.StringSliceVar(&cfg.Cases, "b1-cases", nil, "b1: cases to run (default all: 1P1W,2P2W,1P64W-C2,2P2W-Batch64)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b1: running (port against channel, alternating)...")
			c := cfg
			c.Runs = o.Runs
			rs, err := b1.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return b1.Markdown(rs), nil
		},
	}
}
