package port_test

// This file measures a hop through the port against a buffered channel:
// B1's cases, one Post and Get, and a stage's batched hop.

import (
	"context"
	"testing"

	"github.com/stagedserver/seda/bench/b1"
	"github.com/stagedserver/seda/port"
)

// BenchmarkB1 runs each case of B1 through the port and through a buffered
// channel, side by side; compare the items/s metrics. b1.Run gives the
// alternating, repeated figures quoted in bench/RESULTS.md.
func BenchmarkB1(b *testing.B) {
	for _, c := range b1.Cases() {
		b.Run(c.Name+"/port", func(b *testing.B) {
			d := b1.RunPort(c, b.N)
			b.ReportMetric(float64(b.N)/d.Seconds(), "items/s")
		})
		b.Run(c.Name+"/chan", func(b *testing.B) {
			d := b1.RunChan(c, b.N)
			b.ReportMetric(float64(b.N)/d.Seconds(), "items/s")
		})
	}
}

// BenchmarkPostGet is one Post and one Get on one goroutine: the
// uncontended cost of a hop, and its allocations (want 0).
func BenchmarkPostGet(b *testing.B) {
	p := port.New[b1.Payload](port.Options{Concurrency: 1})
	w := p.Join()
	defer w.Leave()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Post(ctx, port.Packet[b1.Payload]{Value: b1.Payload{A: 1}})
		_, _ = w.Get(ctx)
	}
}

// BenchmarkChanSendRecv is BenchmarkPostGet's baseline.
func BenchmarkChanSendRecv(b *testing.B) {
	ch := make(chan b1.Payload, b1.Capacity)
	b.ReportAllocs()
	for b.Loop() {
		ch <- b1.Payload{A: 1}
		<-ch
	}
}

// BenchmarkStageLike is the hop a stage makes: a pointer value with Key
// set, posted and taken in batches of 16 (PostBatch, GetBatch) and one by
// one (Post, Get), in bursts of the queue's capacity.
func BenchmarkStageLike(b *testing.B) {
	type event struct{ _, _ uint64 }
	ev := &event{}
	ctx := context.Background()
	b.Run("one", func(b *testing.B) {
		p := port.New[*event](port.Options{Concurrency: 1})
		w := p.Join()
		defer w.Leave()
		b.ReportAllocs()
		for b.Loop() {
			for i := range benchDepth {
				_ = p.Post(ctx, port.Packet[*event]{Key: uint64(i) + 1, Value: ev})
			}
			for range benchDepth {
				_, _ = w.Get(ctx)
			}
		}
	})
	b.Run("batch16", func(b *testing.B) {
		p := port.New[*event](port.Options{Concurrency: 1})
		w := p.Join()
		defer w.Leave()
		in := make([]port.Packet[*event], 16)
		for i := range in {
			in[i] = port.Packet[*event]{Key: uint64(i) + 1, Value: ev}
		}
		out := make([]port.Packet[*event], 16)
		b.ReportAllocs()
		for b.Loop() {
			for range benchDepth / 16 {
				_, _ = p.PostBatch(ctx, in)
			}
			for range benchDepth / 16 {
				_, _ = w.GetBatch(ctx, out)
			}
		}
	})
}

// benchDepth is how many packets BenchmarkPostGet moves per round: the
// port's default capacity when it was written (1024), kept so that its
// figures compare across that default's change.
const benchDepth = 1024
