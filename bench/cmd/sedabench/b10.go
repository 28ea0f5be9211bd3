package main

// This file is B10's entry in the suite: its flags, run and picture.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/stagedserver/seda/bench/b10"
)

func b10Benchmark() *benchmark {
	var cfg b10.Config
	return &benchmark{
		Name:  "b10",
		Title: "B10: soak",
		Flags: func(f *pflag.FlagSet) {
			f.DurationVar(&cfg.Duration, "b10-duration", 0, "b10: soak duration (0: 20m)")
			f.Float64Var(&cfg.Fraction, "b10-fraction", 0, "b10: offered rate over the sustained one (0: 0.5)")
			f.IntVar(&cfg.Conns, "b10-conns", 0, "b10: client connections at a time (0: 64)")
			f.StringVar(&cfg.Pipectl, "b10-pipectl", "", "b10: the pipectl binary to run (default: go build ./cmd/pipectl)")
		},
		Run: func(ctx context.Context, o options) (string, error) {
			fmt.Fprintln(o.Log, "b10: running (sustained rate, then the soak)...")
			c := cfg
			c.DSN, c.Log, c.Pipectl = o.DSN, o.Log, cmp.Or(c.Pipectl, o.Pipectl)
			res, err := b10.Run(ctx, c)
			if err != nil {
				return "", err
			}
			if o.Pictures != "" {
				var svg bytes.Buffer
				if err := res.WriteSVG(&svg); err != nil {
					return "", err
				}
				path := filepath.Join(o.Pictures, b10.Picture)
				if err := os.WriteFile(path, svg.Bytes(), 0o644); err != nil {
					return "", fmt.Errorf("b10: write the picture: %w", err)
				}
				fmt.Fprintf(o.Log, "b10: picture written to %s\n", path)
			}
			return res.Markdown(), nil
		},
	}
}
