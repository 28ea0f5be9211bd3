package main

// This file lists the suite's benchmarks and the options they share.

import (
	"context"
	"io"

	"github.com/spf13/pflag"
)

// suite is the benchmark suite, in the order docs/BENCHMARKS.md gives it
// and bench/RESULTS.md keeps. It is the one place a benchmark is
// registered: write package bench/bN (Run and a Markdown result), its entry
// in bN.go next to this file, and add the entry here; --only, --runs,
// --dsn and the RESULTS.md section follow from it.
func suite() []*benchmark {
	return []*benchmark{
		b1Benchmark(),
		b2Benchmark(),
		b3Benchmark(),
		b4Benchmark(),
		b4aBenchmark(),
		b5Benchmark(),
		b6Benchmark(),
		b7Benchmark(),
		b8Benchmark(),
		b9Benchmark(),
		b10Benchmark(),
		b11Benchmark(),
	}
}

// benchmark is one entry of the suite.
type benchmark struct {
	Name  string // as --only takes it: b1, b2, ...
	Title string // the RESULTS.md section heading, as in docs/BENCHMARKS.md
	// Flags, if set, declares the benchmark's own knobs (sizes, durations)
	// on the command's flag set. Name them after the benchmark, as
	// --b3-records, so that they cannot clash; their zero values must mean
	// the benchmark's defaults, which are what RESULTS.md records.
	Flags func(f *pflag.FlagSet)
	// Run measures, side by side with the baseline, and returns the body
	// of the benchmark's section of bench/RESULTS.md (Markdown, without
	// the heading); progress lines go to o.Log.
	Run func(ctx context.Context, o options) (string, error)
}

// options are the suite-wide knobs every benchmark honours where they
// apply.
type options struct {
	Runs int       // alternating runs per case; 0: the benchmark's default
	DSN  string    // an existing PostgreSQL instead of a throwaway one
	Log  io.Writer // progress lines
	// Pipectl is a pipectl binary built already (`make bench` builds
	// bin/pipectl once) for the benchmarks that run pipelines as processes
	// of their own; "": each of them builds one with the go command.
	Pipectl string
	// Pictures is the directory of the results file, where a benchmark
	// that draws writes its picture (the section links it by name); ""
	// under --dry-run: no picture is written.
	Pictures string
}
