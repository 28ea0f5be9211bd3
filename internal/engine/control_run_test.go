package engine

// This file tests the controllers' knobs on a running stage: setting
// workers, batch and concurrency, pinning and releasing them, the auto
// pool's growth and limits, and admission seen from the runtime.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// gate is a handler whose calls wait for the test: each call reports its
// batch size and whether its context had ended, then waits for release.
type gate struct {
	calls   chan int
	release chan struct{}
	ctxDead atomic.Int64
	block   bool // wait inside stage.Blocking
}

func newGate() *gate { return &gate{calls: make(chan int, 1024), release: make(chan struct{})} }

func (g *gate) Handle(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
	// Under block the call is reported from inside stage.Blocking, so a
	// test that has seen the call also sees the worker counted blocked.
	wait := func() { g.calls <- len(b); <-g.release }
	if g.block {
		stage.Blocking(ctx, wait)
	} else {
		wait()
	}
	if ctx.Err() != nil {
		g.ctxDead.Add(1)
	}
	for _, ev := range b {
		ev.Done(nil)
	}
	return nil
}

func post(t *testing.T, s *Stage, n int) {
	t.Helper()
	src, lc := NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	lc.Connect(s, nil)
	em := src.NewEmitter()
	for i := range n {
		em.Emit(context.Background(), src.NewEvent(nil, uint64(i+1), stage.Origin{}))
	}
	em.Flush(context.Background())
}

// A worker count an operator sets before the stage's pool starts (pipectl
// scale while a sink retries its start) is the count the pool starts
// with. It was pinned in the controller and answered, but the pool
// started the settings' count, and a pinned count is never moved again.
func TestSetWorkersBeforeStart(t *testing.T) {
	s, l := NewHandlerStage(stage.Settings{Name: "db", Workers: 2, Batch: 1, Capacity: 64}, newGate(), nil)
	if err := l.SetWorkers(7); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		l.CloseQueue()
		l.Wait()
	}()
	if st := s.Stats(); st.Pool.Workers != 7 || st.Control.Workers.Now != 7 || st.Control.Workers.Auto {
		t.Fatalf("set to 7 before start: pool %+v, control %+v", st.Pool, st.Control.Workers)
	}
}

// SetWorkers adds workers at once and retires them without interrupting
// the batch they hold: a retired busy worker finishes its batch, with its
// context alive, and then leaves.
func TestSetWorkersRetiresWithoutInterrupting(t *testing.T) {
	g := newGate()
	g.block = true
	s, l := NewHandlerStage(stage.Settings{Name: "db", Workers: 2, Batch: 1, Capacity: 64}, g, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.SetWorkers(5); err != nil {
		t.Fatal(err)
	}
	post(t, s, 5)
	for range 5 {
		<-g.calls // five workers each hold a batch
	}
	if err := l.SetWorkers(1); err != nil {
		t.Fatal(err)
	}
	// The pool is sized to one; the four retired still hold their
	// batches, inside a blocking call, and count as workers (retiring)
	// until they leave, so that blocked never exceeds workers.
	st := s.Stats()
	if st.Pool.Workers != 5 || st.Pool.Retiring != 4 || st.Pool.Blocked != 5 || st.Control.Workers.Auto || st.Control.Workers.Now != 1 {
		t.Fatalf("after SetWorkers(1): pool %+v, control %+v; want 5 workers, 4 retiring, 5 blocked, sized to 1", st.Pool, st.Control.Workers)
	}
	close(g.release) // the four retired finish their batches and leave
	poll.Until(t, "the batches finished and the retired workers left", func() bool {
		st := s.Stats()
		return st.In == 5 && st.Pool.Blocked == 0 && st.Pool.Workers == 1 && st.Pool.Retiring == 0
	})
	post(t, s, 3) // the one worker left takes the rest
	for range 3 {
		<-g.calls
	}
	l.CloseQueue()
	l.Wait()
	if n := g.ctxDead.Load(); n != 0 {
		t.Fatalf("%d batches saw their context end: retiring interrupted them", n)
	}
	if d := s.Stats().Control.Last; d == nil || d.Knob != stats.KnobWorkers || d.To != 1 {
		t.Fatalf("last decision %+v", d)
	}
}

// SetBatch pins the batch size; workers take it from their next batch.
func TestSetBatch(t *testing.T) {
	g := newGate()
	s, l := NewHandlerStage(stage.Settings{Name: "p", Workers: 1, Capacity: 64}, g, nil)
	if st := s.Stats().Control.Batch; !st.Auto || st.Now != 64 || st.Max != 64 {
		t.Fatalf("unset batch: %+v, want auto starting at the ceiling (the capacity, 64)", st)
	}
	if err := l.SetBatch(3); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	post(t, s, 10)
	close(g.release)
	got := 0
	for got < 10 {
		n := <-g.calls
		if n > 3 {
			t.Fatalf("batch of %d with the size pinned at 3", n)
		}
		got += n
	}
	if st := s.Stats().Control.Batch; st.Auto || st.Now != 3 {
		t.Fatalf("pinned batch: %+v", st)
	}
	if err := l.SetBatch(0); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats().Control.Batch; !st.Auto || st.Now != 3 {
		t.Fatalf("batch handed back: %+v, want auto from 3", st)
	}
	l.CloseQueue()
	l.Wait()
}

// SetConcurrency changes the run slots; the floor of an auto pool follows.
func TestSetConcurrency(t *testing.T) {
	s, l := NewHandlerStage(stage.Settings{Name: "p", Concurrency: 2}, pass, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.SetConcurrency(3); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Pool.Concurrency != 3 || st.Control.Workers.Min != 3 {
		t.Fatalf("after SetConcurrency(3): pool %+v, workers %+v", st.Pool, st.Control.Workers)
	}
	l.CloseQueue()
	l.Wait()
}

func TestResizeErrors(t *testing.T) {
	inline, _ := NewHandlerStage(stage.Settings{Name: "parse", Inline: true}, pass, nil)
	if err := inline.setWorkers(2); !errors.Is(err, ErrNotResizable) {
		t.Errorf("SetWorkers on an inline stage: %v", err)
	}
	_, srcl := NewSourceStage(stage.Settings{Name: "accept"}, nil, nil)
	if err := srcl.SetBatch(2); !errors.Is(err, ErrNotResizable) {
		t.Errorf("SetBatch on a source: %v", err)
	}
	_, l := NewHandlerStage(stage.Settings{Name: "p"}, pass, nil)
	for _, err := range []error{l.SetWorkers(-1), l.SetWorkers(stage.MaxWorkers + 1), l.SetBatch(stage.MaxBatch + 1), l.SetConcurrency(0)} {
		if err == nil {
			t.Error("out-of-range value accepted")
		}
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.CloseQueue()
	l.Wait()
	if err := l.SetWorkers(3); err == nil {
		t.Error("SetWorkers on a stopped stage accepted")
	}
}

// Settings: unset workers and batch are auto, set ones are pinned.
func TestSettingsAutoOrPinned(t *testing.T) {
	a := stage.Settings{}.WithDefaults()
	if !a.AutoWorkers || !a.AutoBatch || a.Batch != AutoBatchCeiling(a.Capacity) || a.Workers != a.Concurrency {
		t.Errorf("unset: %+v", a)
	}
	p := stage.Settings{Workers: 4, Batch: 200}.WithDefaults()
	if p.AutoWorkers || p.AutoBatch || p.Workers != 4 || p.Batch != 200 {
		t.Errorf("set: %+v", p)
	}
	if b := (stage.Settings{Capacity: 100000}).WithDefaults(); b.Batch != stage.MaxAutoBatch {
		t.Errorf("auto batch with a large queue: %d, want %d", b.Batch, stage.MaxAutoBatch)
	}
}

// The pool controller, with the real runtime: a stage whose handler waits
// inside stage.Blocking and whose queue stays deep gets more workers than its
// run slots. (The rules and their timing are tested on a fake clock; this
// checks that the loop is wired to them.)
func TestAutoPoolGrowsWhenBlocked(t *testing.T) {
	h := stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		stage.Blocking(ctx, func() { time.Sleep(5 * time.Millisecond) })
		for _, ev := range b {
			ev.Done(nil)
		}
		return nil
	})
	s, l := NewHandlerStage(stage.Settings{Name: "db", Concurrency: 1, Batch: 1, Capacity: 256}, h, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { // keep the queue deep
		defer close(fed)
		src, lc := NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
		lc.Connect(s, nil)
		em := src.NewEmitter()
		for i := 0; ; i++ {
			select {
			case <-stop:
				em.Flush(context.Background())
				return
			default:
			}
			em.Emit(context.Background(), src.NewEvent(nil, uint64(i), stage.Origin{}))
			em.Flush(context.Background())
		}
	}()
	poll.Until(t, "the pool grew past its run slot", func() bool { return s.Stats().Pool.Workers > 1 })
	close(stop)
	<-fed
	l.CloseQueue()
	l.Wait()
	if st := s.Stats(); st.Control.Decisions == 0 || st.Control.Last == nil {
		t.Fatalf("no decision recorded: %+v", st.Control)
	}
}

type limited struct{ stage.HandlerFunc }

func (limited) MaxWorkers() int { return 3 }

// A handler that can use only so many workers caps an auto pool there.
func TestWorkerLimiterCapsCeiling(t *testing.T) {
	s, _ := NewHandlerStage(stage.Settings{Name: "db", Concurrency: 2}, limited{pass}, nil)
	if w := s.Stats().Control.Workers; w.Max != 3 || !w.Auto {
		t.Fatalf("workers %+v, want auto with a ceiling of 3", w)
	}
	s, _ = NewHandlerStage(stage.Settings{Name: "p", Concurrency: 2}, pass, nil)
	if w := s.Stats().Control.Workers; w.Max != AutoWorkersCeiling(2) {
		t.Fatalf("workers %+v, want a ceiling of %d", w, AutoWorkersCeiling(2))
	}
}

// A source under admission control never waits for room: what finds the
// next queue full is refused busy at once. The emitter is made before
// admission starts: it need not know.
func TestAdmissionEmitterNeverWaits(t *testing.T) {
	next, nl := NewHandlerStage(stage.Settings{Name: "store", Capacity: 2}, pass, nil)
	src, sl := NewSourceStage(stage.Settings{Name: "accept"}, nil, nil)
	sl.Connect(next, nil)
	rt := sourceRuntime{src}
	em := rt.NewEmitter()
	rt.StartAdmission(250 * time.Millisecond)
	defer sl.Close()
	res := newResults()
	for i := 1; i <= 5; i++ {
		em.Emit(context.Background(), rt.NewEvent(nil, uint64(i), stage.Origin{To: res}))
	}
	em.Flush(context.Background()) // would block forever if it waited: nothing takes from the queue
	for i := uint64(3); i <= 5; i++ {
		if errs := res.get(i); len(errs) != 1 || !errors.Is(errs[0], stage.ErrBusy) {
			t.Errorf("event %d: %v, want busy", i, errs)
		}
	}
	if res.count() != 3 {
		t.Errorf("%d events finished, want the 3 that did not fit", res.count())
	}
	nl.CloseQueue()
}

// The door looks past the first queue: with the parse stage on a queue of
// its own (empty: parsing keeps up), a backlog in the store's queue
// further on stops admission as well. The store's queue holds the cold
// depth limit (1024 events, before anything has finished), so the source
// admits none; with it empty, it admits all.
func TestAdmissionSeesDeeperQueue(t *testing.T) {
	store, stl := NewHandlerStage(stage.Settings{Name: "store"}, pass, nil)
	parse, pl := NewHandlerStage(stage.Settings{Name: "parse"}, pass, nil)
	src, sl := NewSourceStage(stage.Settings{Name: "accept"}, nil, nil)
	feed, fl := NewSourceStage(stage.Settings{Name: "feed"}, nil, nil)
	sl.Connect(parse, nil)
	pl.Connect(store, nil)
	fl.Connect(store, nil)
	sourceRuntime{src}.StartAdmission(250 * time.Millisecond)
	a := src.adm.Load()
	defer sl.Close()
	defer fl.Close()

	if got := a.Admit(time.Now(), 10); got != 10 {
		t.Fatalf("with every queue empty the door admitted %d of 10", got)
	}
	frt := sourceRuntime{feed}
	em := frt.NewEmitter()
	res := newResults()
	for i := 1; i <= admissionColdDepth; i++ {
		em.Emit(context.Background(), frt.NewEvent(nil, uint64(i), stage.Origin{To: res}))
	}
	em.Flush(context.Background())
	if d := store.Stats().Queue.Depth; d != admissionColdDepth {
		t.Fatalf("the store's queue holds %d, want %d", d, admissionColdDepth)
	}
	if d := parse.Stats().Queue.Depth; d != 0 {
		t.Fatalf("the parse queue holds %d, want 0", d)
	}
	if got := a.Admit(time.Now(), 10); got != 0 {
		t.Errorf("with %d events in the store's queue, past the parse stage, the door admitted %d of 10, want 0", admissionColdDepth, got)
	}
	if s := a.stats().Admission; s == nil || s.Shed != 10 {
		t.Errorf("admission figures %+v, want 10 shed", s)
	}
	pl.CloseQueue()
	stl.CloseQueue()
}

// A knob handed back to its controller comes back into the controller's
// range: a pool pinned below its floor (its run slots) grows to the
// floor, and a batch pinned above its ceiling shrinks to it, at once.
func TestHandBackIntoRange(t *testing.T) {
	g := newGate()
	s, l := NewHandlerStage(stage.Settings{Name: "db", Workers: 1, Concurrency: 2, Capacity: 64}, g, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(g.release)
		l.CloseQueue()
		l.Wait()
	}()
	if err := l.SetBatch(1000); err != nil {
		t.Fatal(err)
	}
	if err := l.SetWorkers(0); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBatch(0); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	w, b := st.Control.Workers, st.Control.Batch
	if !w.Auto || w.Now != w.Min || st.Pool.Workers != w.Min || w.Min != 2 {
		t.Errorf("workers pinned at 1, then auto: pool %d, knob %+v; want auto at its floor, 2", st.Pool.Workers, *w)
	}
	if !b.Auto || b.Now != b.Max || b.Max != 64 {
		t.Errorf("batch pinned at 1000, then auto: %+v; want auto at its ceiling, 64", *b)
	}
}

// oneConn is a handler that can use one worker (a sink with one
// connection): it counts the calls in progress, and each waits for the
// test.
type oneConn struct {
	in, peak atomic.Int64
	release  chan struct{}
}

func (o *oneConn) MaxWorkers() int { return 1 }

func (o *oneConn) Handle(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
	n := o.in.Add(1)
	for p := o.peak.Load(); n > p && !o.peak.CompareAndSwap(p, n); p = o.peak.Load() {
	}
	<-o.release
	o.in.Add(-1)
	stage.DoneAll(b, nil)
	return nil
}

// An auto pool starts with no more workers than the handler can use
// (MaxWorkers), not one per run slot: only its growth was capped, and a
// one-connection handler on 4 run slots was called 4 times at once. A
// pinned workers overrides MaxWorkers, as stage.Env.MaxWorkers says (the
// handler then sizes itself for Workers).
func TestAutoPoolStartsAtMaxWorkers(t *testing.T) {
	for _, pinned := range []int{0, 3} {
		const n = 8
		h := &oneConn{release: make(chan struct{})}
		s := newHandlerStage(stage.Settings{Name: "one", Workers: pinned, Concurrency: 4, Batch: 1, Terminal: true}, h, nil)
		src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
		src.connect(s, nil)
		if err := s.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		em := src.NewEmitter()
		for i := range n {
			em.Emit(context.Background(), src.NewEvent(nil, uint64(i+1), stage.Origin{}))
		}
		em.Flush(context.Background())
		want := int64(1)
		if pinned != 0 {
			want = int64(pinned)
		}
		// Every worker the pool has takes an event and calls the handler,
		// which holds it: the calls in progress are the workers.
		poll.Until(t, "the workers to take their events", func() bool {
			return h.in.Load() >= want && h.in.Load()+int64(s.port.Stats().Depth) == n
		})
		if got := h.peak.Load(); got != want {
			t.Errorf("workers %d: %d calls at once, want %d", pinned, got, want)
		}
		if st := s.Stats(); st.Pool.Workers != int(want) {
			t.Errorf("workers %d: pool of %d, want %d", pinned, st.Pool.Workers, want)
		}
		close(h.release)
		s.closeQueue()
		s.wg.Wait()
		if src.InFlight() != 0 {
			t.Errorf("workers %d: %d events unfinished", pinned, src.InFlight())
		}
	}
}
