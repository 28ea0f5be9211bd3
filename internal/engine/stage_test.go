package engine

// This file tests a stage's runtime on chains of real stages: delivery,
// handler errors and panics, double Done, routes, linger and run slots,
// shedding, and a source whose start fails; and holds TestMain.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// results records every completion by sequence number.
type results struct {
	mu   sync.Mutex
	errs map[uint64][]error
}

func newResults() *results { return &results{errs: map[uint64][]error{}} }

func (r *results) Complete(ev *stage.Event, err error) {
	r.mu.Lock()
	r.errs[ev.Seq] = append(r.errs[ev.Seq], err)
	r.mu.Unlock()
}

func (r *results) get(seq uint64) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[seq]
}

func (r *results) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

var pass = stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
	for _, ev := range b {
		out.Emit(ctx, ev)
	}
	return nil
})

// chain builds src -> stages..., starts the handler stages and returns a
// function that emits n events from src, then drains and joins everything.
func run(t *testing.T, n int, stages ...*Stage) *results {
	t.Helper()
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	prev := src
	for _, s := range stages {
		prev.connect(s, map[string]*Stage{s.Name(): s})
		prev = s
	}
	for i := len(stages) - 1; i >= 0; i-- {
		if err := stages[i].start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	res := newResults()
	em := src.NewEmitter()
	for i := 1; i <= n; i++ {
		em.Emit(context.Background(), src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: res}))
	}
	em.Flush(context.Background())
	for _, s := range stages {
		s.closeQueue()
		s.wg.Wait()
	}
	if got := src.InFlight(); got != 0 {
		t.Errorf("in flight after drain: %d", got)
	}
	return res
}

func TestChainDeliversEveryEventOnce(t *testing.T) {
	a := newHandlerStage(stage.Settings{Name: "a", Workers: 4, Concurrency: 2, Capacity: 16}, pass, nil)
	b := newHandlerStage(stage.Settings{Name: "b", Inline: true}, pass, nil)
	c := newHandlerStage(stage.Settings{Name: "c", Workers: 3, Batch: 7}, pass, nil)
	const n = 20000
	res := run(t, n, a, b, c)
	for i := uint64(1); i <= n; i++ {
		if errs := res.get(i); len(errs) != 1 || errs[0] != nil {
			t.Fatalf("event %d: completions %v", i, errs)
		}
	}
	for _, s := range []*Stage{a, b, c} {
		st := s.Stats()
		if st.In != n || st.Out != n {
			t.Errorf("stage %s: in %d out %d, want %d", s.Name(), st.In, st.Out, n)
		}
	}
	if !b.Stats().Inline || b.Stats().Queue.Capacity != 0 {
		t.Errorf("inline stage stats: %+v", b.Stats())
	}
}

func TestInlineStageGetsTheUpstreamBatch(t *testing.T) {
	var maxBatch atomic.Int64
	gate := make(chan struct{})
	a := newHandlerStage(stage.Settings{Name: "a", Workers: 1, Batch: 100}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		<-gate
		for _, ev := range b {
			out.Emit(ctx, ev)
		}
		return nil
	}), nil)
	b := newHandlerStage(stage.Settings{Name: "b", Inline: true}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		if int64(len(b)) > maxBatch.Load() {
			maxBatch.Store(int64(len(b)))
		}
		for _, ev := range b {
			ev.Done(nil)
		}
		return nil
	}), nil)
	close(gate)
	run(t, 1000, a, b)
	if maxBatch.Load() < 2 {
		t.Fatalf("inline stage never saw more than one event per call (max %d)", maxBatch.Load())
	}
}

func TestHandlerErrorFailsOnlyUnfinishedEvents(t *testing.T) {
	boom := errors.New("boom")
	a := newHandlerStage(stage.Settings{Name: "a", Workers: 1, Batch: 10}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			switch ev.Seq % 3 {
			case 0:
				out.Emit(ctx, ev) // handed on: not failed by the error
			case 1:
				ev.Done(nil) // finished: not failed again
			}
		}
		return boom
	}), nil)
	res := run(t, 30, a)
	for i := uint64(1); i <= 30; i++ {
		errs := res.get(i)
		if len(errs) != 1 {
			t.Fatalf("event %d: %d completions", i, len(errs))
		}
		if want := i%3 == 2; (errs[0] != nil) != want || (want && !errors.Is(errs[0], boom)) {
			t.Errorf("event %d: err %v", i, errs[0])
		}
	}
	if got := a.Stats().Errors; got != 10 {
		t.Errorf("errors counted %d, want 10", got)
	}
}

func TestPanicFailsItsBatchAndWorkerKeepsServing(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	a := newHandlerStage(stage.Settings{Name: "fragile", Workers: 1, Batch: 1}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			if ev.Seq == 5 {
				panic("bad record")
			}
			ev.Done(nil)
		}
		return nil
	}), zap.New(core))
	res := run(t, 10, a)
	for i := uint64(1); i <= 10; i++ {
		errs := res.get(i)
		if len(errs) != 1 {
			t.Fatalf("event %d: %d completions", i, len(errs))
		}
		if (errs[0] != nil) != (i == 5) {
			t.Errorf("event %d: err %v", i, errs[0])
		}
	}
	if e := res.get(5)[0]; !strings.Contains(e.Error(), `stage "fragile"`) || !strings.Contains(e.Error(), "bad record") {
		t.Errorf("panic error %q should name the stage and the panic value", e)
	}
	if a.Stats().Panics != 1 {
		t.Errorf("panics %d", a.Stats().Panics)
	}
	if logs.FilterMessageSnippet("panicked").FilterField(zap.String("stage", "fragile")).Len() != 1 {
		t.Errorf("panic not logged with the stage name: %v", logs.All())
	}
}

func TestDoubleDoneIsCountedAndLogged(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, zap.New(core))
	res := newResults()
	ev := src.NewEvent(nil, 1, stage.Origin{To: res})
	ev.Done(nil)
	ev.Done(errors.New("again"))
	if n := len(res.get(1)); n != 1 {
		t.Fatalf("completer saw %d completions, want 1", n)
	}
	if src.Stats().DoubleDone != 1 || logs.Len() != 1 {
		t.Fatalf("double done %d, logs %d", src.Stats().DoubleDone, logs.Len())
	}
	if !ev.Finished() || src.InFlight() != 0 {
		t.Fatal("event not finished")
	}
}

// senderResults is a Completer that names its events' senders, and
// counts how often it was asked.
type senderResults struct {
	*results
	asked *atomic.Int64
}

func (r senderResults) Sender(key uint64) string {
	r.asked.Add(1)
	return fmt.Sprintf("client-%d", key)
}

// The log line of a second Done names the record's sender when the
// event's Completer can (stage.Origin.Sender), and leaves it out when not.
func TestDoubleDoneNamesSender(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, zap.New(core))
	asked := new(atomic.Int64)
	named := src.NewEvent(nil, 1, stage.Origin{To: senderResults{newResults(), asked}, Key: 7})
	named.Done(nil)
	for range 100 {
		named.Done(nil) // logged at most once a second
	}
	if n := logs.Len(); n < 1 {
		t.Fatal("nothing logged")
	}
	if got := logs.All()[0].ContextMap()["sender"]; got != "client-7" {
		t.Errorf("sender %v, want client-7", got)
	}
	// The sender is named only for a line logged, not for each of the
	// 100 a buggy handler may cause.
	if n := asked.Load(); n != int64(logs.Len()) {
		t.Errorf("Sender asked %d times for %d lines logged", n, logs.Len())
	}
	if got := (stage.Origin{To: newResults(), Key: 7}).Sender(); got != "" {
		t.Errorf("a Completer without Sender names %q", got)
	}
}

// A handler that emits an event twice: the second Emit is refused,
// counted and logged, as a second Done is. It used to hand the event on
// again, owned by the next stage by then or finished and recycled: the
// sink wrote some records twice and emptied events (B: 4000 lines for
// 2000 records, 1989 of them empty).
func TestEmitTwiceIsRefused(t *testing.T) {
	const n = 2000
	core, logs := observer.New(zap.ErrorLevel)
	twice := newHandlerStage(stage.Settings{Name: "twice", Workers: 2, Batch: 8}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			out.Emit(ctx, ev)
			out.Emit(ctx, ev)
		}
		return nil
	}), zap.New(core))
	var mu sync.Mutex
	seen := map[string]int{}
	sink := newHandlerStage(stage.Settings{Name: "sink", Workers: 4, Batch: 1, Terminal: true}, stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
		mu.Lock()
		for _, ev := range b {
			seen[string(ev.Payload)]++
		}
		mu.Unlock()
		stage.DoneAll(b, nil)
		return nil
	}), nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(twice, nil)
	twice.connect(sink, nil)
	for _, s := range []*Stage{sink, twice} {
		if err := s.start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Every event is made before any is emitted: none is a recycled one
	// reused, whose new life a second Emit could not tell from the old.
	res := newResults()
	evs := make([]*stage.Event, n)
	for i := range evs {
		evs[i] = src.NewEvent([]byte(fmt.Sprint("r", i+1)), uint64(i+1), stage.Origin{To: res})
	}
	em := src.NewEmitter()
	for _, ev := range evs {
		em.Emit(context.Background(), ev)
	}
	em.Flush(context.Background())
	for _, s := range []*Stage{twice, sink} {
		s.closeQueue()
		s.wg.Wait()
	}
	for i := uint64(1); i <= n; i++ {
		if errs := res.get(i); len(errs) != 1 || errs[0] != nil {
			t.Fatalf("event %d: completions %v", i, errs)
		}
	}
	if len(seen) != n {
		t.Errorf("the sink saw %d distinct records, want %d", len(seen), n)
	}
	for rec, k := range seen {
		if k != 1 || rec == "" {
			t.Errorf("the sink saw %q %d times", rec, k)
		}
	}
	if got := twice.Stats().DoubleDone; got != n {
		t.Errorf("double_done %d, want %d", got, n)
	}
	if logs.FilterMessageSnippet("emitted twice").Len() == 0 {
		t.Error("the second Emit was not logged")
	}
	if st := sink.Stats(); st.In != n || st.Out != n {
		t.Errorf("sink in %d out %d, want %d", st.In, st.Out, n)
	}
}

func TestEndOfPipelineFinishesEvents(t *testing.T) {
	a := newHandlerStage(stage.Settings{Name: "last"}, pass, nil)
	res := run(t, 5, a)
	if res.count() != 5 {
		t.Fatalf("%d completions", res.count())
	}
}

func TestEmitToUnknownRouteFailsTheEvent(t *testing.T) {
	a := newHandlerStage(stage.Settings{Name: "router", Workers: 1}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			if err := out.EmitTo(ctx, "nowhere", ev); err == nil {
				t.Error("EmitTo an unknown route succeeded")
			}
		}
		return nil
	}), nil)
	res := run(t, 3, a)
	for i := uint64(1); i <= 3; i++ {
		if errs := res.get(i); len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "nowhere") {
			t.Errorf("event %d: %v", i, errs)
		}
	}
}

func TestRejectFinishesEventBusy(t *testing.T) {
	gate := make(chan struct{})
	sink := newHandlerStage(stage.Settings{Name: "slow", Workers: 1, Concurrency: 1, Capacity: 2, Overflow: port.Reject, Batch: 1},
		stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			for _, ev := range b {
				ev.Done(nil)
			}
			return nil
		}), nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(sink, nil)
	if err := sink.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := newResults()
	em := src.NewEmitter()
	for i := uint64(1); i <= 10; i++ {
		if err := em.Emit(context.Background(), src.NewEvent(nil, i, stage.Origin{To: res})); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	em.Flush(context.Background())
	close(gate)
	sink.closeQueue()
	sink.wg.Wait()
	if res.count() != 10 {
		t.Fatalf("completions %d", res.count())
	}
	// One event may be in the handler and two queued; the rest are refused.
	busy := 0
	for i := uint64(1); i <= 10; i++ {
		if errs := res.get(i); errors.Is(errs[0], stage.ErrBusy) {
			busy++
		}
	}
	if busy < 7 || sink.Stats().Rejected != uint64(busy) || src.Stats().Errors != uint64(busy) {
		t.Fatalf("busy %d, rejected %d, source errors %d", busy, sink.Stats().Rejected, src.Stats().Errors)
	}
	if src.Stats().Out != uint64(10-busy) {
		t.Fatalf("out %d, want %d", src.Stats().Out, 10-busy)
	}
}

func TestLingerFillsBatches(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	a := newHandlerStage(stage.Settings{Name: "a", Workers: 1, Batch: 50, Linger: time.Hour}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		mu.Lock()
		sizes = append(sizes, len(b))
		mu.Unlock()
		for _, ev := range b {
			ev.Done(nil)
		}
		return nil
	}), nil)
	run(t, 100, a)
	// With an hour's linger, batches are only cut when full or when the
	// queue closes: exactly two full batches.
	if len(sizes) != 2 || sizes[0] != 50 || sizes[1] != 50 {
		t.Fatalf("batch sizes %v, want [50 50]", sizes)
	}
}

// A worker whose linger ends without more events holds no run slot (its
// waiting GetBatch gave it up) and takes one back before its handler
// runs: with concurrency 1 no two handlers run at once, with shard_by too.
// Before, every lingering worker ran its handler without a slot, and 4
// of 4 workers ran at once.
func TestLingerKeepsTheRunSlotLimit(t *testing.T) {
	for _, shard := range []bool{false, true} {
		var cur, most atomic.Int64
		h := stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			c := cur.Add(1)
			for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
			}
			time.Sleep(2 * time.Millisecond) // work, holding the slot
			cur.Add(-1)
			for _, ev := range b {
				ev.Done(nil)
			}
			return nil
		})
		set := stage.Settings{Name: "a", Workers: 4, Concurrency: 1, Batch: 100, Linger: 200 * time.Microsecond}
		if shard {
			set.ShardBy = []string{"k"}
		}
		a := newHandlerStage(set, h, nil)
		src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
		src.connect(a, map[string]*Stage{"a": a})
		if err := a.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		em := src.NewEmitter()
		for i := 1; i <= 300; i++ { // one at a time, so that batches linger
			ev := src.NewEvent([]byte("x"), uint64(i), stage.Origin{})
			ev.Set("k", i)
			em.Emit(context.Background(), ev)
			em.Flush(context.Background())
			time.Sleep(50 * time.Microsecond)
		}
		a.closeQueue()
		a.wg.Wait()
		if m := most.Load(); m > 1 {
			t.Errorf("shard_by %v: %d handlers ran at once under concurrency 1", shard, m)
		}
	}
}

func TestBlockingGivesUpTheRunSlot(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	var second atomic.Bool
	a := newHandlerStage(stage.Settings{Name: "db", Workers: 2, Concurrency: 1, Batch: 1}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			if ev.Seq == 1 {
				stage.Blocking(ctx, func() {
					close(inside)
					<-release
				})
			} else {
				second.Store(true)
			}
			ev.Done(nil)
		}
		return nil
	}), nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(a, nil)
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	em := src.NewEmitter()
	em.Emit(context.Background(), src.NewEvent(nil, 1, stage.Origin{}))
	<-inside
	if st := a.Stats(); st.Pool.Blocked != 1 || st.Pool.Running != 0 {
		t.Errorf("while blocking: %+v", st.Pool)
	}
	// With concurrency 1, event 2 can only run because worker 1 gave its
	// slot up inside stage.Blocking.
	em.Emit(context.Background(), src.NewEvent(nil, 2, stage.Origin{}))
	poll.Until(t, "the second event to run while the first worker blocks", second.Load)
	close(release)
	a.closeQueue()
	a.wg.Wait()
	if !second.Load() {
		t.Fatal("the second event did not run while the first worker was blocking")
	}
}

func TestAbortEndsWorkers(t *testing.T) {
	started := make(chan struct{})
	a := newHandlerStage(stage.Settings{Name: "stuck", Workers: 1, Batch: 1}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}), nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(a, nil)
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := newResults()
	em := src.NewEmitter()
	em.Emit(context.Background(), src.NewEvent(nil, 1, stage.Origin{To: res}))
	em.Emit(context.Background(), src.NewEvent(nil, 2, stage.Origin{To: res}))
	<-started
	a.abort()
	a.wg.Wait()
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	// stage.Event 1 failed with the handler's error; event 2 is still queued,
	// abandoned, and counted as in flight.
	if errs := res.get(1); len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("event 1: %v", errs)
	}
	if src.InFlight() != 1 {
		t.Fatalf("in flight %d, want 1", src.InFlight())
	}
}

// shedRig is a source, an inline parse stage that counts the events it
// runs on, and a store of one worker whose handler holds each batch until
// gate is closed (held says it has one), its queue of capacity and
// overflow given.
type shedRig struct {
	src, parse, sink *Stage
	parsed           atomic.Int64
	gate, held       chan struct{}
	res              *results
	em               *Outputs
}

func newShedRig(t *testing.T, capacity int, overflow port.Overflow) *shedRig {
	t.Helper()
	r := &shedRig{gate: make(chan struct{}), held: make(chan struct{}, 1), res: newResults()}
	r.sink = newHandlerStage(stage.Settings{Name: "store", Workers: 1, Concurrency: 1, Capacity: capacity, Overflow: overflow, Batch: 1},
		stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			select {
			case r.held <- struct{}{}:
			default:
			}
			<-r.gate
			for _, ev := range b {
				ev.Done(nil)
			}
			return nil
		}), nil)
	r.parse = newHandlerStage(stage.Settings{Name: "parse", Inline: true}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		r.parsed.Add(int64(len(b)))
		for _, ev := range b {
			out.Emit(ctx, ev)
		}
		return nil
	}), nil)
	r.src = newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	r.src.connect(r.parse, map[string]*Stage{"parse": r.parse})
	r.parse.connect(r.sink, map[string]*Stage{"store": r.sink})
	if err := r.sink.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.em = r.src.NewEmitter()
	return r
}

// emit sends events from..to from the source, then flushes.
func (r *shedRig) emit(from, to uint64) {
	for i := from; i <= to; i++ {
		r.em.Emit(context.Background(), r.src.NewEvent(nil, i, stage.Origin{To: r.res}))
	}
	r.em.Flush(context.Background())
}

// stop lets the store finish and waits for its worker.
func (r *shedRig) stop() {
	close(r.gate)
	r.sink.closeQueue()
	r.sink.wg.Wait()
}

// With its only next stage full under overflow reject, an inline stage's
// batch is refused as busy before its handler runs: no work is spent on
// events the queue would turn away.
func TestInlineShedsWhenNextQueueIsFull(t *testing.T) {
	r := newShedRig(t, 4, port.Reject)
	// The worker takes event 1 and holds it; only then do 2-10 come, so
	// that four are queued and five refused whenever the worker runs.
	r.emit(1, 1)
	<-r.held
	r.emit(2, 10)
	if d := r.sink.port.Stats().Depth; d != 4 {
		t.Fatalf("queue depth %d, want 4", d)
	}
	before := r.parsed.Load()
	r.emit(11, 20) // the queue is full: shed before parsing
	if got := r.parsed.Load(); got != before {
		t.Fatalf("the inline handler ran on %d events while the next queue was full", got-before)
	}
	for i := uint64(11); i <= 20; i++ {
		if errs := r.res.get(i); len(errs) != 1 || !errors.Is(errs[0], stage.ErrBusy) {
			t.Fatalf("event %d: %v", i, errs)
		}
	}
	r.stop()
	busy := 0
	for i := uint64(1); i <= 20; i++ {
		if errors.Is(r.res.get(i)[0], stage.ErrBusy) {
			busy++
		}
	}
	if got := r.sink.Stats().Rejected; got != uint64(busy) {
		t.Fatalf("store rejected %d, busy completions %d", got, busy)
	}
	if r.res.count() != 20 || r.src.InFlight() != 0 {
		t.Fatalf("completions %d, in flight %d", r.res.count(), r.src.InFlight())
	}
}

// The events an inline stage sheds were handed to it (its source counted
// them out) and refused busy on its behalf: /stats counts them in its in
// as in its errors, so that its in is its out plus its errors, and in the
// next stage's rejected.
func TestInlineShedBalancesBooks(t *testing.T) {
	r := newShedRig(t, 4, port.Reject)
	r.emit(1, 1)
	<-r.held
	r.emit(2, 10)  // 2-5 queued, 6-10 refused as they are posted
	r.emit(11, 20) // shed before parsing
	r.stop()
	src, parse, sink := r.src.Stats(), r.parse.Stats(), r.sink.Stats()
	if parse.In != parse.Out+parse.Errors || parse.In != src.Out {
		t.Fatalf("parse: in %d, out %d, errors %d; the source handed it %d", parse.In, parse.Out, parse.Errors, src.Out)
	}
	if parse.In != 20 || parse.Errors != 15 || sink.Rejected != 15 {
		t.Fatalf("parse: in %d, errors %d; store rejected %d; want 20, 15, 15", parse.In, parse.Errors, sink.Rejected)
	}
}

// A terminal stage hands nothing on: its Out counts the events it finished
// without error.
func TestTerminalStageCountsFinishedAsOut(t *testing.T) {
	sink := newHandlerStage(stage.Settings{Name: "store", Workers: 2, Terminal: true}, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		for _, ev := range b {
			if ev.Seq%4 == 0 {
				ev.Done(errors.New("refused"))
			} else {
				ev.Done(nil)
			}
		}
		return nil
	}), nil)
	run(t, 100, sink)
	if st := sink.Stats(); st.In != 100 || st.Out != 75 || st.Errors != 25 {
		t.Fatalf("in %d out %d errors %d, want 100 75 25", st.In, st.Out, st.Errors)
	}
}

// newHandlerStage and newSourceStage drop the Lifecycle: the package's own
// tests drive the stage through its unexported methods.
func newHandlerStage(set stage.Settings, h stage.Handler, log *zap.Logger) *Stage {
	s, _ := NewHandlerStage(set, h, log)
	return s
}

func newSourceStage(set stage.Settings, src stage.Source, log *zap.Logger) *Stage {
	s, _ := NewSourceStage(set, src, log)
	return s
}

// A source's door refuses a read's records at once while the first queue
// on its way on (past inline stages) rejects on overflow and is full: no
// event is made and the inline stage does not run; the queue counts them
// rejected. A queue that blocks on overflow never refuses at the door.
func TestDoorRefusesWhileRejectingQueueIsFull(t *testing.T) {
	for _, overflow := range []port.Overflow{port.Reject, port.Block} {
		t.Run(overflow.String(), func(t *testing.T) {
			r := newShedRig(t, 2, overflow)
			rt := sourceRuntime{r.src}
			if got := rt.Admit(time.Now(), 5); got != 5 {
				t.Fatalf("room in the queue: admitted %d of 5", got)
			}
			r.emit(1, 1) // the worker holds it
			<-r.held
			r.emit(2, 3) // the queue is full
			if d := r.sink.port.Stats().Depth; d != 2 {
				t.Fatalf("queue depth %d, want 2", d)
			}
			before := r.parsed.Load()
			got := rt.Admit(time.Now(), 5)
			want, rejected := 0, uint64(5)
			if overflow == port.Block {
				want, rejected = 5, 0 // the source waits on the queue instead
			}
			if got != want || r.sink.Stats().Rejected != rejected {
				t.Fatalf("queue full: admitted %d of 5, rejected %d; want %d, %d", got, r.sink.Stats().Rejected, want, rejected)
			}
			if r.parsed.Load() != before {
				t.Fatal("the inline stage ran at the door")
			}
			r.stop()
			if r.res.count() != 3 || r.src.InFlight() != 0 {
				t.Fatalf("completions %d, in flight %d", r.res.count(), r.src.InFlight())
			}
		})
	}
}

// failingSource starts a goroutine and then fails its Start, as a source
// binding two listeners whose second is taken might; Close stops the
// goroutine.
type failingSource struct {
	panicky
	stop, done chan struct{}
	closes     int
}

func (f *failingSource) Start(context.Context, stage.SourceRuntime) error {
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go func() { defer close(f.done); <-f.stop }()
	f.maybe("Start")
	return errors.New("bind: address in use")
}

func (f *failingSource) StopInput(context.Context) error { return nil }
func (f *failingSource) Drain(context.Context) error     { return nil }

func (f *failingSource) Close() error {
	f.closes++
	close(f.stop)
	<-f.done
	return nil
}

// A Source whose Start fails (or panics) is closed, once, as a Handler
// whose Start fails is: what it started before failing is released. The
// pipeline does not close a source that did not start, and the source's
// goroutine leaked.
func TestSourceClosedWhenStartFails(t *testing.T) {
	for _, at := range []string{"", "Start"} {
		f := &failingSource{panicky: panicky{at: at}}
		_, l := NewSourceStage(stage.Settings{Name: "src"}, f, nil)
		if err := l.Start(context.Background()); err == nil {
			t.Fatal("the start did not fail")
		}
		if f.closes != 1 {
			t.Fatalf("panic at %q: closed %d times by the failed start, want 1", at, f.closes)
		}
		if err := l.Close(); err != nil || f.closes != 1 {
			t.Fatalf("panic at %q: Close after the failed start: %v, closed %d times, want 1", at, err, f.closes)
		}
	}
}

// The log line of an event finished twice redacts the second error, as
// every error the runtime logs is: a handler's error may quote its DSN.
func TestDoubleDoneLogRedacted(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	src, _ := NewSourceStage(stage.Settings{Name: "src"}, nil, zap.New(core))
	e := sourceRuntime{src}.NewEvent([]byte("x"), 1, stage.Origin{})
	e.Done(nil)
	e.Done(errors.New("insert failed on postgres://app:s3cret@db/x"))
	if logs.Len() != 1 {
		t.Fatalf("%d lines logged, want the second Done's", logs.Len())
	}
	if s := fmt.Sprint(logs.All()[0].ContextMap()); strings.Contains(s, "s3cret") {
		t.Errorf("the password is logged: %s", s)
	}
}
