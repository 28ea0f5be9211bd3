package engine

// This file tests the recycling of finished events: once, never while
// another stage holds them, and a reused event starts empty.

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// The events a handler finishes are recycled once it returns; the ones it
// hands on are not touched by it; a second Done within the handler is
// still caught and does not recycle the event twice; and a batch's error
// fails only the events the handler left alone, never a record that
// reuses one it finished.
func TestFinishedEventsAreRecycledOnce(t *testing.T) {
	var mu sync.Mutex
	var seen []*stage.Event
	hold := make(chan struct{})
	next := newHandlerStage(stage.Settings{Name: "next", Workers: 1, Concurrency: 1}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		<-hold
		for _, ev := range b {
			if string(ev.Payload) != "handed on" {
				t.Errorf("next stage got %q", ev.Payload)
			}
			ev.Done(nil)
		}
		return nil
	}), nil)
	errBatch := errors.New("batch failed")
	a := newHandlerStage(stage.Settings{Name: "a", Workers: 1, Concurrency: 1, Batch: 8}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		mu.Lock()
		seen = append(seen, b...)
		mu.Unlock()
		for _, ev := range b {
			switch ev.Seq % 4 {
			case 0: // finished twice: caught
				ev.Set("x", 1)
				ev.Done(nil)
				ev.Done(nil)
			case 1:
				ev.Payload = []byte("handed on")
				out.Emit(ctx, ev)
			case 2:
				ev.Done(errors.New("refused"))
			}
			// case 3: left alone, failed by the batch's error
		}
		return errBatch
	}), nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(a, map[string]*Stage{"a": a})
	a.connect(next, map[string]*Stage{"next": next})
	for _, s := range []*Stage{next, a} {
		if err := s.start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	res := newResults()
	em := src.NewEmitter()
	for i := 1; i <= 8; i++ {
		em.Emit(context.Background(), src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: res}))
	}
	em.Flush(context.Background())
	a.closeQueue()
	a.wg.Wait()
	// a's events that it handed on wait in next: untouched, not recycled.
	mu.Lock()
	for _, ev := range seen {
		switch ev.Seq % 4 {
		case 1:
			if string(ev.Payload) != "handed on" || ev.Finished() {
				t.Errorf("event %d handed on was recycled or finished: %q", ev.Seq, ev.Payload)
			}
		default: // finished by a or by its batch error: recycled
			if ev.Payload != nil || ev.NumFields() != 0 || !ev.Finished() {
				t.Errorf("event %d finished by a was not recycled: %q, %d fields", ev.Seq, ev.Payload, ev.NumFields())
			}
		}
	}
	mu.Unlock()
	close(hold)
	next.closeQueue()
	next.wg.Wait()
	for i := uint64(1); i <= 8; i++ {
		errs := res.get(i)
		if len(errs) != 1 {
			t.Fatalf("event %d completed %d times: %v", i, len(errs), errs)
		}
		switch i % 4 {
		case 0, 1:
			if errs[0] != nil {
				t.Errorf("event %d: %v", i, errs[0])
			}
		case 2:
			if errs[0] == nil || errs[0].Error() != `stage "a": refused` {
				t.Errorf("event %d: %v", i, errs[0])
			}
		case 3:
			if !errors.Is(errs[0], errBatch) {
				t.Errorf("event %d: %v, want the batch's error", i, errs[0])
			}
		}
	}
	if n := src.Stats().DoubleDone; n != 2 {
		t.Errorf("double dones %d, want 2", n)
	}
	if src.InFlight() != 0 {
		t.Errorf("in flight %d", src.InFlight())
	}
}

// A new record reuses a recycled event: it starts with no fields and
// nothing of the old record.
func TestReusedEventStartsEmpty(t *testing.T) {
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	ev := src.NewEvent([]byte("old"), 1, stage.Origin{Key: 7})
	ev.Set("a", "1")
	ev.Done(nil)
	recycle(ev)
	ev.Done(nil) // stale, before anyone reuses it: still caught
	if n := src.Stats().DoubleDone; n != 1 {
		t.Fatalf("double dones %d, want 1", n)
	}
	for range 100 { // the pool may make a new one instead: either is fine
		n := src.NewEvent([]byte("new"), 2, stage.Origin{})
		if n.NumFields() != 0 || n.Origin.Key != 0 || string(n.Payload) != "new" || n.Finished() {
			t.Fatalf("reused event: %d fields, key %d, payload %q, finished %v", n.NumFields(), n.Origin.Key, n.Payload, n.Finished())
		}
		n.Done(nil)
		recycle(n)
	}
}

// batchRecorder records runs of completions.
type batchRecorder struct {
	mu   sync.Mutex
	runs [][]uint64
	errs []error
}

func (b *batchRecorder) Complete(ev *stage.Event, err error) {
	b.CompleteAll([]*stage.Event{ev}, err)
}

func (b *batchRecorder) CompleteAll(evs []*stage.Event, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var seqs []uint64
	for _, ev := range evs {
		seqs = append(seqs, ev.Seq)
	}
	b.runs = append(b.runs, seqs)
	b.errs = append(b.errs, err)
}

// stage.DoneAll finishes a batch as Done does each event: counted once each, a
// second Done caught and skipped; a BatchCompleter gets each run of its
// consecutive events in one call, and the source records the latency of
// each (once per run read together).
func TestDoneAll(t *testing.T) {
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	sink := newHandlerStage(stage.Settings{Name: "sink", Terminal: true}, nop{}, nil)
	a, b := &batchRecorder{}, &batchRecorder{}
	plain := newResults()
	var evs []*stage.Event
	for i, to := range []stage.Completer{a, a, b, b, b, plain, a, a} {
		ev := src.NewEvent(nil, uint64(i+1), stage.Origin{To: to})
		state(ev).Owner.Store(&sink.h)
		evs = append(evs, ev)
	}
	evs[3].Done(nil) // finished already: caught, and it splits b's run
	stage.DoneAll(evs, nil)
	if got := a.runs; len(got) != 2 || len(got[0]) != 2 || got[0][0] != 1 || len(got[1]) != 2 || got[1][0] != 7 {
		t.Fatalf("a's runs %v, want [1 2] [7 8]", got)
	}
	if got := b.runs; len(got) != 3 || len(got[0]) != 1 || got[0][0] != 4 || len(got[1]) != 1 || got[1][0] != 3 || got[2][0] != 5 {
		t.Fatalf("b's runs %v, want [4] (its own Done) [3] [5]", got)
	}
	if plain.count() != 1 {
		t.Fatalf("plain completer saw %d", plain.count())
	}
	if st := sink.Stats(); st.Out != 8 {
		t.Fatalf("sink out %d, want 8", st.Out)
	}
	if n := src.Stats().DoubleDone; n != 1 {
		t.Fatalf("double dones %d, want 1", n)
	}
	if src.InFlight() != 0 {
		t.Fatalf("in flight %d", src.InFlight())
	}
	if n := src.lat.count(); n != 8 {
		t.Fatalf("the source observed %d latencies, want 8", n)
	}
}
