package main

import (
	"context"
	"fmt"

	"github.com/stagedserver/seda/bench/b8"
)

// runB8 runs B8 with its defaults (1,000,000 messages, 4 connections),
// recording where the pipeline process's CPU goes in its first run.
func runB8(ctx context.Context, o benchOptions) (string, error) {
	fmt.Fprintln(o.Log, "b8: running (the README's syslog pipeline, 4 psql \\copy, rsyslog ompgsql, the JSON pipeline, alternating)...")
	res, err := b8.Run(ctx, b8.Config{Runs: o.Runs, Profile: true, Log: o.Log})
	if err != nil {
		return "", err
	}
	return res.Markdown(), nil
}
