package stage

// This file measures the hot path of a hop: a source makes events and
// emits them to a stage whose handler finishes them, one by one (Done) or
// a batch at once (DoneAll), with the source told of each completion and
// its latency observed, as a network source's are.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// benchCompleter is the events' Origin: it observes their latency, as
// netio's connections do, and counts them.
type benchCompleter struct {
	rt   SourceRuntime
	done atomic.Int64
}

func (c *benchCompleter) Complete(ev *Event, _ error) {
	c.rt.ObserveFinished(ev)
	c.done.Add(1)
}

func (c *benchCompleter) CompleteAll(evs []*Event, _ error) {
	c.rt.ObserveFinishedAll(evs)
	c.done.Add(int64(len(evs)))
}

func benchHop(b *testing.B, set Settings, h Handler) {
	sink := newHandlerStage(set, h, nil)
	src := newSourceStage(Settings{Name: "src"}, nil, nil)
	src.connect(sink, nil)
	if err := sink.start(context.Background()); err != nil {
		b.Fatal(err)
	}
	c := &benchCompleter{rt: SourceRuntime{src}}
	origin := Origin{To: c}
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
	benchHop(b, Settings{Name: "sink", Workers: 2, Batch: 64, Terminal: true},
		HandlerFunc(func(_ context.Context, batch []*Event, _ Emitter) error {
			for _, ev := range batch {
				ev.Done(nil)
			}
			return nil
		}))
}

// BenchmarkHopDoneAll: each batch finished with one DoneAll, as a
// database sink finishes a committed transaction.
func BenchmarkHopDoneAll(b *testing.B) {
	benchHop(b, Settings{Name: "sink", Workers: 2, Batch: 64, Terminal: true},
		HandlerFunc(func(_ context.Context, batch []*Event, _ Emitter) error {
			DoneAll(batch, nil)
			return nil
		}))
}
