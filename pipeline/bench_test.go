package pipeline_test

// This file holds B2 of docs/BENCHMARKS.md as a Go benchmark pair: b.N
// items through three stages of 4 workers, the framework against
// hand-written channels. Run both with -benchtime=1000000x and compare
// items/s; bench/b2.Run does the alternating runs that the figures in
// bench/RESULTS.md come from.

import (
	"context"
	"testing"

	"github.com/stagedserver/seda/bench/b2"
)

func BenchmarkB2Pipeline(b *testing.B) {
	took, err := b2.RunPipeline(context.Background(), b2.Config{Items: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "items/s")
}

func BenchmarkB2Channels(b *testing.B) {
	took, err := b2.RunChannels(context.Background(), b2.Config{Items: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "items/s")
}
