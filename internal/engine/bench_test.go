package engine

// This file measures the hot path of a hop: a source makes events and
// emits them to a stage whose handler finishes them, one by one (Done) or
// a batch at once (stage.DoneAll), with the source told of each completion and
// its latency observed, as a network source's are.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/stage"
)

// benchCompleter is the events' Origin: it counts them, as netio's
// connections do. (Their latency is observed by the runtime, when they
// finish; before internal/engine, completers called ObserveFinished and
// ObserveFinishedAll.)
type benchCompleter struct {
	done atomic.Int64
}

func (c *benchCompleter) Complete(_ *stage.Event, _ error) { c.done.Add(1) }

func (c *benchCompleter) CompleteAll(evs []*stage.Event, _ error) { c.done.Add(int64(len(evs))) }

func benchHop(b *testing.B, set stage.Settings, h stage.Handler) {
	sink := newHandlerStage(set, h, nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(sink, nil)
	if err := sink.start(context.Background()); err != nil {
		b.Fatal(err)
	}
	c := &benchCompleter{}
	origin := stage.Origin{To: c}
	em := src.NewEmitter()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var now time.Time
	for i := range b.N {
		if i&63 == 0 {
			now = time.Now()
			em.Flush(ctx)
		}
		_ = em.Emit(ctx, src.NewEventAt(nil, uint64(i), origin, now))
	}
	em.Flush(ctx)
	sink.closeQueue()
	sink.wg.Wait()
	b.StopTimer()
	if got := c.done.Load(); got != int64(b.N) {
		b.Fatalf("%d events finished, want %d", got, b.N)
	}
}

// BenchmarkHopDone: each event finished with its own Done.
func BenchmarkHopDone(b *testing.B) {
	benchHop(b, stage.Settings{Name: "sink", Workers: 2, Batch: 64, Terminal: true},
		stage.HandlerFunc(func(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
			for _, ev := range batch {
				ev.Done(nil)
			}
			return nil
		}))
}

// BenchmarkHopDoneAll: each batch finished with one stage.DoneAll, as a
// database sink finishes a committed transaction.
func BenchmarkHopDoneAll(b *testing.B) {
	benchHop(b, stage.Settings{Name: "sink", Workers: 2, Batch: 64, Terminal: true},
		stage.HandlerFunc(func(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
			stage.DoneAll(batch, nil)
			return nil
		}))
}
