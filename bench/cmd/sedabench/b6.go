package main

// This file is B6's entry in the suite: its flags, run and picture.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b6"
)

func b6Benchmark() *benchmark {
	var cfg b6.Config
	return &benchmark{
		Name:  "b6",
		Title: "B6: overload on a slow database",
		Flags: func(f *pflag.FlagSet) {
			f.DurationVar(&cfg.Duration, "b6-duration", 0, "b6: overload with admission control (0: 15s)")
			f.DurationVar(&cfg.BaselineDuration, "b6-baseline", 0, "b6: overload without it, for comparison (0: a third of --b6-duration; -1s: skip)")
			f.Float64Var(&cfg.Factor, "b6-factor", 0, "b6: offered rate over the sustained one (0: 5)")
			f.IntVar(&cfg.Conns, "b6-conns", 0, "b6: client connections (0: 64)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b6: running (sustained rate, then overload with and without admission control)...")
			c := cfg
			c.DSN, c.Log = o.DSN, o.Log
			res, err := b6.Run(ctx, c)
			if err != nil {
				return "", err
			}
			if o.Pictures != "" {
				var svg bytes.Buffer
				if err := res.WriteSVG(&svg); err != nil {
					return "", err
				}
				path := filepath.Join(o.Pictures, b6.Picture)
				if err := os.WriteFile(path, svg.Bytes(), 0o644); err != nil {
					return "", fmt.Errorf("b6: write the picture: %w", err)
				}
				fmt.Fprintf(o.Log, "b6: picture written to %s\n", path)
			}
			return res.Markdown(), nil
		},
	}
}
