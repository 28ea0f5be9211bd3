package netio_test

// This file measures the netio sources over loopback: acked records per
// second through netio.tcp, and datagrams per second through netio.udp.

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// BenchmarkTCPAcked measures records per second through a netio source
// into a stage that finishes them, over loopback, counting a record once
// its ack arrived. Records are 100 bytes.
func BenchmarkTCPAcked(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			src, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			_, in := engine.NewSourceStage(stage.Settings{Name: "in", Workers: 2, Concurrency: 2}, src, zap.NewNop())
			_, sink := engine.NewHandlerStage(stage.Settings{Name: "sink", Workers: 2, Concurrency: 2, Capacity: 8192},
				stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
					for _, ev := range batch {
						ev.Done(nil)
					}
					return nil
				}), nil)
			in.Connect(sink.Stage(), nil)
			ctx := context.Background()
			sink.Start(ctx)
			if err := in.Start(ctx); err != nil {
				b.Fatal(err)
			}
			rec := make([]byte, 100)
			for i := range rec {
				rec[i] = 'a' + byte(i%26)
			}
			cs := make([]*wire.Client, conns)
			for i := range cs {
				if cs[i], err = wire.Dial(ctx, src.(*netio.Source).Addr().String(), wire.Lines); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(rec) + 1))
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, c := range cs {
				n := b.N / conns
				if i == 0 {
					n += b.N % conns
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						c.Send(rec)
					}
					c.Flush()
					if err := c.WaitTimeout(time.Minute); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			for _, c := range cs {
				c.Close()
			}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			src.Drain(dctx)
			sink.CloseQueue()
			sink.Wait()
			in.Close()
		})
	}
}

// BenchmarkUDP measures datagrams per second through a netio.udp source
// into a stage that finishes them, over loopback, and the allocations
// per datagram. Datagrams are 100 bytes, sent in windows of 32 that are
// each finished before the next is sent, so that neither the socket's
// buffer nor the source's queue overflows.
func BenchmarkUDP(b *testing.B) {
	src, err := newSource(netio.UDPKind, map[string]any{"listen": "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	var seen atomic.Uint64
	_, in := engine.NewSourceStage(stage.Settings{Name: "in", Kind: netio.UDPKind, Workers: 2, Concurrency: 2, Capacity: 1024}, src, zap.NewNop())
	_, sink := engine.NewHandlerStage(stage.Settings{Name: "sink", Workers: 2, Concurrency: 2, Capacity: 8192},
		stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
			for _, ev := range batch {
				ev.Done(nil)
			}
			seen.Add(uint64(len(batch)))
			return nil
		}), nil)
	in.Connect(sink.Stage(), nil)
	ctx := context.Background()
	sink.Start(ctx)
	if err := in.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, src.(*netio.UDPSource).Addr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 100)
	for i := range rec {
		rec[i] = 'a' + byte(i%26)
	}
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		for range min(32, b.N-sent) {
			c.Write(rec)
			sent++
		}
		for end := time.Now().Add(10 * time.Second); seen.Load() < uint64(sent); runtime.Gosched() {
			if time.Now().After(end) {
				b.Fatalf("%d of %d datagrams arrived (source %+v)", seen.Load(), sent, *in.Stage().Stats().Source)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
	c.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	src.Drain(dctx)
	sink.CloseQueue()
	sink.Wait()
	in.Close()
}
