package main

// This file is B7's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b7"
)

func b7Benchmark() *benchmark {
	var cfg b7.Config
	return &benchmark{
		Name:  "b7",
		Title: "B7: one pipeline across processes (front → JetStream → back) against one process",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b7-records", 0, "b7: records per run (0: 200,000)")
			f.IntVar(&cfg.Conns, "b7-conns", 0, "b7: client connections (0: 16)")
			f.StringSliceVar(&cfg.Contenders, "b7-contenders", nil, "b7: which of single, split and embedded to run (default all)")
			f.StringVar(&cfg.LogDir, "b7-logs", "", "b7: keep each process's output in this directory")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b7: running (single process and split across processes, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log, c.Pipectl = o.Runs, o.DSN, o.Log, o.Pipectl
			res, err := b7.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
