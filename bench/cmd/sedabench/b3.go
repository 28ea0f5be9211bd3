package main

// This file is B3's entry in the suite: its flags and run.

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b3"
)

func b3Benchmark() *benchmark {
	var cfg b3.Config
	return &benchmark{
		Name:  "b3",
		Title: "B3: TCP → process → PostgreSQL, end to end",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&cfg.Records, "b3-records", 0, "b3: records per run (0: 1,000,000)")
			f.IntVar(&cfg.NaiveRecords, "b3-naive-records", 0, "b3: records per naive run (0: 50,000)")
			f.IntVar(&cfg.Conns, "b3-conns", 0, "b3: client connections (0: 64)")
			f.IntVar(&cfg.LatencyRecords, "b3-latency-records", 0, "b3: records in the half-rate latency runs (0: records/4, -1: skip)")
			f.StringSliceVar(&cfg.Variants, "b3-variants", nil, "b3: a subset of pipeline,copy,chan,naive (default all)")
			f.StringVar(&cfg.CPUProfile, "b3-cpuprofile", "", "b3: write a CPU profile of the first pipeline run to this file")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b3: running (pipeline, COPY, channel pipeline and naive server, alternating)...")
			c := cfg
			c.Runs, c.DSN, c.Log = o.Runs, o.DSN, o.Log
			res, err := b3.Run(ctx, c)
			if err != nil {
				return "", err
			}
			return res.Markdown(), nil
		},
	}
}
