package stage

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

type countCompleter struct {
	ok, bad atomic.Int64
	mu      sync.Mutex
}

func (c *countCompleter) Complete(ev *Event, err error) {
	if err != nil {
		c.bad.Add(1)
	} else {
		c.ok.Add(1)
	}
}

func TestSmokeChain(t *testing.T) {
	pass := HandlerFunc(func(ctx context.Context, b []*Event, out Emitter) error {
		for _, ev := range b {
			out.Emit(ctx, ev)
		}
		return nil
	})
	src := NewSourceStage(Settings{Name: "src"}, nil, nil)
	a := NewHandlerStage(Settings{Name: "a", Workers: 4, Concurrency: 2}, pass, nil)
	b := NewHandlerStage(Settings{Name: "b", Inline: true}, pass, nil)
	src.Connect(a, nil)
	a.Connect(b, nil)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &countCompleter{}
	em := src.NewEmitter()
	for i := 0; i < 100000; i++ {
		em.Emit(context.Background(), src.NewEvent(nil, uint64(i), Origin{To: c}))
	}
	em.Flush(context.Background())
	a.CloseQueue()
	a.Wait()
	if c.ok.Load() != 100000 || src.InFlight() != 0 {
		t.Fatalf("ok=%d inflight=%d", c.ok.Load(), src.InFlight())
	}
	t.Logf("%+v", a.Stats())
	t.Logf("%+v", b.Stats())
}
