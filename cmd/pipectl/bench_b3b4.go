package main

import (
	"context"
	"fmt"

	"github.com/stagedserver/seda/bench/b3"
	"github.com/stagedserver/seda/bench/b4"
)

// runB3 runs B3 with its defaults (1,000,000 records, 64 connections,
// 3 alternating runs unless --runs says otherwise).
func runB3(ctx context.Context, o benchOptions) (string, error) {
	fmt.Fprintln(o.Log, "b3: running (pipeline, COPY, channel pipeline and naive server, alternating)...")
	res, err := b3.Run(ctx, b3.Config{Runs: o.Runs, Log: o.Log})
	if err != nil {
		return "", err
	}
	return res.Markdown(), nil
}

// runB4 runs B4 with its defaults (10× the sustained rate for 30 s).
func runB4(ctx context.Context, o benchOptions) (string, error) {
	fmt.Fprintln(o.Log, "b4: running (overload)...")
	res, err := b4.Run(ctx, b4.Config{Log: o.Log})
	if err != nil {
		return "", err
	}
	return res.Markdown(), nil
}
