package engine

// This file tests shard_by on real stages: per-key order with batching,
// retries and resizes, inline stages, and backpressure.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// keyOrder is a handler that checks shard_by's promise: the events of a
// key (field "k") are handled in the order emitted (their Seq rises) and
// by one batch at a time.
type keyOrder struct {
	mu      sync.Mutex
	last    map[int64]uint64
	busy    map[int64]int
	count   map[int64]int
	bad     []string
	handled int
	inside  atomic.Int32 // batches in the handler now
	most    atomic.Int32 // the most batches in the handler at once
	// work, if set, runs while the batch's keys are held.
	work func(ctx context.Context, b []*stage.Event)
}

func newKeyOrder() *keyOrder {
	return &keyOrder{last: map[int64]uint64{}, busy: map[int64]int{}, count: map[int64]int{}}
}

func keyOf(ev *stage.Event) int64 {
	v, _ := ev.Value("k")
	return v.Int()
}

func (k *keyOrder) Handle(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
	in := k.inside.Add(1)
	for m := k.most.Load(); in > m && !k.most.CompareAndSwap(m, in); m = k.most.Load() {
	}
	keys := map[int64]bool{}
	k.mu.Lock()
	for _, ev := range b {
		key := keyOf(ev)
		if !keys[key] {
			keys[key] = true
			if k.busy[key]++; k.busy[key] > 1 {
				k.bad = append(k.bad, fmt.Sprintf("key %d in two batches at once", key))
			}
		}
		if last, ok := k.last[key]; ok && ev.Seq <= last {
			k.bad = append(k.bad, fmt.Sprintf("key %d: seq %d after %d", key, ev.Seq, last))
		}
		k.last[key] = ev.Seq
		k.count[key]++
		k.handled++
	}
	k.mu.Unlock()
	if k.work != nil {
		k.work(ctx, b)
	}
	k.mu.Lock()
	for key := range keys {
		k.busy[key]--
	}
	k.mu.Unlock()
	k.inside.Add(-1)
	for _, ev := range b {
		out.Emit(ctx, ev)
	}
	return nil
}

func (k *keyOrder) check(t *testing.T, want int) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.bad) > 0 {
		t.Fatalf("%d violations, the first: %v", len(k.bad), k.bad[:min(5, len(k.bad))])
	}
	if k.handled != want {
		t.Fatalf("handled %d events, want %d", k.handled, want)
	}
}

// jitter yields a random number of times, some of them inside
// stage.Blocking (the worker gives its run slot up, as a database call
// does), so that batches of several workers interleave.
func jitter(ctx context.Context, b []*stage.Event) {
	n := int(b[0].Seq*2654435761) % 7
	stage.Blocking(ctx, func() {
		for range n {
			runtime.Gosched()
		}
	})
	for range n % 3 {
		runtime.Gosched()
	}
}

// emitKeyed emits n events from src, event i (Seq i, from 1) of key i%keys.
func emitKeyed(src *Stage, n, keys int, res *results) {
	em := src.NewEmitter()
	for i := 1; i <= n; i++ {
		ev := src.NewEvent(nil, uint64(i), stage.Origin{To: res})
		ev.Set("k", int64(i%keys))
		em.Emit(context.Background(), ev)
	}
	em.Flush(context.Background())
}

func startChain(t *testing.T, stages ...*Stage) *Stage {
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
	return src
}

func stopChain(t *testing.T, src *Stage, stages ...*Stage) {
	t.Helper()
	for _, s := range stages {
		s.closeQueue()
		s.wg.Wait()
	}
	if got := src.InFlight(); got != 0 {
		t.Errorf("in flight after drain: %d", got)
	}
}

// Per-key order with batching and several workers: the first batch with
// key 0 holds its shards until another worker's batch has run beside it,
// so batches interleave for certain.
func TestShardKeepsKeyOrder(t *testing.T) {
	for _, batch := range []int{1, 7, 64} {
		t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
			k := newKeyOrder()
			var first sync.Once
			k.work = func(ctx context.Context, b []*stage.Event) {
				if slices.ContainsFunc(b, func(ev *stage.Event) bool { return keyOf(ev) == 0 }) {
					first.Do(func() {
						stage.Blocking(ctx, func() {
							poll.Until(t, "another batch beside key 0's", func() bool { return k.most.Load() >= 2 })
						})
					})
				}
				jitter(ctx, b)
			}
			s := newHandlerStage(stage.Settings{Name: "s", Workers: 8, Concurrency: 4, Batch: batch, Capacity: 256, ShardBy: []string{"k"}}, k, nil)
			src := startChain(t, s)
			const n = 20000
			res := newResults()
			emitKeyed(src, n, 1000, res)
			stopChain(t, src, s)
			k.check(t, n)
			if res.count() != n {
				t.Fatalf("%d events finished, want %d", res.count(), n)
			}
			if st := s.Stats(); st.In != n || st.Queue.Depth != 0 || st.Shards == nil || st.Shards.Queued != 0 || st.Shards.Held != 0 {
				t.Fatalf("stats after drain: in %d queue %+v shards %+v", st.In, st.Queue, st.Shards)
			}
		})
	}
}

// A batch retried inside its handler (as db.postgres retries) holds its
// shard: later events of its key wait, other keys go on.
func TestShardOrderAcrossRetries(t *testing.T) {
	retrying := make(chan struct{})
	retry := make(chan struct{})
	var attempts atomic.Int32
	k := newKeyOrder()
	k.work = func(ctx context.Context, b []*stage.Event) {
		if keyOf(b[0]) == 0 && b[0].Seq == 1 {
			// The first attempt fails; the handler waits and tries again.
			attempts.Add(1)
			close(retrying)
			stage.Blocking(ctx, func() { <-retry })
			attempts.Add(1)
		}
	}
	// key 0 and key 1 must sit in different shards; find such keys.
	s := newHandlerStage(stage.Settings{Name: "s", Workers: 4, Batch: 1, Capacity: 64, ShardBy: []string{"k"}}, k, nil)
	other := int64(1)
	for ; shardOfKey(s, other) == shardOfKey(s, 0); other++ {
	}
	src := startChain(t, s)
	res := newResults()
	em := src.NewEmitter()
	emit := func(seq uint64, key int64) {
		ev := src.NewEvent(nil, seq, stage.Origin{To: res})
		ev.Set("k", key)
		em.Emit(context.Background(), ev)
		em.Flush(context.Background())
	}
	emit(1, 0)
	<-retrying
	for i := uint64(2); i <= 10; i++ {
		emit(i, 0)         // wait behind the retried batch
		emit(100+i, other) // runs meanwhile
	}
	poll.Until(t, "the other key's events to finish while key 0's batch retries", func() bool { return res.count() == 9 })
	if got := len(res.get(2)); got != 0 || k.handledOf(0) != 1 {
		t.Fatalf("key 0's later events ran while its batch was retried: event 2 finished %d times, key 0 handled %d", got, k.handledOf(0))
	}
	if st := s.Stats(); st.Shards.Queued != 9 || st.Queue.Depth != 9 {
		t.Fatalf("while retrying: shards %+v queue %+v, want key 0's 9 events waiting in its mailbox", st.Shards, st.Queue)
	}
	close(retry)
	stopChain(t, src, s)
	k.check(t, 19)
	if attempts.Load() != 2 {
		t.Fatalf("attempts %d", attempts.Load())
	}
}

func (k *keyOrder) handledOf(key int64) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.count[key]
}

func shardOfKey(s *Stage, key int64) uint8 {
	ev := new(stage.Event)
	ev.Set("k", key)
	k, _ := s.shards.index(ev, nil)
	return k
}

// Per-key order while the pool is resized under load: workers are added
// and retired (a retired worker handles what is runnable, then leaves).
func TestShardOrderWhilePoolResizes(t *testing.T) {
	k := newKeyOrder()
	k.work = jitter
	s, l := NewHandlerStage(stage.Settings{Name: "s", Workers: 2, Batch: 16, Capacity: 128, ShardBy: []string{"k"}}, k, nil)
	src := startChain(t, s)
	stop := make(chan struct{})
	resized := make(chan int)
	go func() {
		n := 0
		for i := 0; ; i++ {
			select {
			case <-stop:
				resized <- n
				return
			default:
			}
			if err := l.SetWorkers(1 + i%9); err != nil {
				t.Error(err)
			}
			n++
			runtime.Gosched()
		}
	}()
	const n = 30000
	res := newResults()
	emitKeyed(src, n, 100, res)
	poll.Until(t, "every event handled", func() bool { return res.count() == n })
	close(stop)
	if got := <-resized; got < 2 {
		t.Fatalf("the pool was resized %d times", got)
	}
	stopChain(t, src, s)
	k.check(t, n)
}

// An inline stage with shard_by: upstream workers take the locks of their
// batch's shards, so that one at a time handles a key. Four emitters (as
// four connections of a source) each send their own keys in order; the
// keys of different emitters share shards.
func TestShardInline(t *testing.T) {
	k := newKeyOrder()
	k.work = jitter
	s := newHandlerStage(stage.Settings{Name: "s", Inline: true, ShardBy: []string{"k"}}, k, nil)
	src := startChain(t, s)
	res := newResults()
	const conns, per = 4, 5000
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			em := src.NewEmitter()
			for i := 1; i <= per; i++ {
				ev := src.NewEvent(nil, uint64(c*per+i), stage.Origin{To: res})
				ev.Set("k", int64(c*1000+i%300))
				em.Emit(context.Background(), ev)
				if i%int(1+c*3) == 0 {
					em.Flush(context.Background())
				}
			}
			em.Flush(context.Background())
		}()
	}
	wg.Wait()
	stopChain(t, src, s)
	k.check(t, conns*per)
	if st := s.Stats(); st.Shards == nil || st.Shards.Held != 0 || st.Shards.Busiest <= 0 {
		t.Fatalf("inline shards %+v", st.Shards)
	}
}

// The mailboxes hold a bounded number of events: behind a held hot key
// the port fills, and overflow: reject refuses what does not fit. /stats
// counts the mailboxes in the depth and shows the hot key's share.
func TestShardBackpressure(t *testing.T) {
	hold := make(chan struct{})
	holding := make(chan struct{})
	var once sync.Once
	k := newKeyOrder()
	k.work = func(ctx context.Context, b []*stage.Event) {
		once.Do(func() {
			close(holding)
			stage.Blocking(ctx, func() { <-hold })
		})
	}
	const capacity = 100
	s := newHandlerStage(stage.Settings{Name: "s", Workers: 4, Batch: 10, Capacity: capacity, Overflow: port.Reject, ShardBy: []string{"k"}}, k, nil)
	src := startChain(t, s)
	res := newResults()
	em := src.NewEmitter()
	ev := src.NewEvent(nil, 1, stage.Origin{To: res})
	ev.Set("k", int64(7))
	em.Emit(context.Background(), ev)
	em.Flush(context.Background())
	<-holding
	limit := bound(10, capacity) // 64 in the mailboxes, then 100 in the port
	seq := uint64(1)
	emit := func(n int) {
		for range n {
			seq++
			ev := src.NewEvent(nil, seq, stage.Origin{To: res})
			ev.Set("k", int64(7))
			em.Emit(context.Background(), ev)
			em.Flush(context.Background())
		}
	}
	emit(limit)
	poll.Until(t, "the mailboxes full", func() bool { return s.Stats().Shards.Queued == limit })
	emit(2 * capacity)
	st := s.Stats()
	if st.Queue.Depth != limit+capacity || st.Shards.Queued != limit {
		t.Fatalf("queue %+v shards %+v, want %d in the mailboxes and %d in the port", st.Queue, st.Shards, limit, capacity)
	}
	if st.Rejected != capacity || res.count() != capacity {
		t.Fatalf("rejected %d, finished %d: want the %d that found the port full", st.Rejected, res.count(), capacity)
	}
	for i := seq - capacity + 1; i <= seq; i++ {
		if errs := res.get(i); len(errs) != 1 || !errors.Is(errs[0], stage.ErrBusy) {
			t.Fatalf("event %d: %v, want busy", i, errs)
		}
	}
	if st.Shards.Busiest != 1 {
		t.Fatalf("busiest shard's share %v, want 1 (one key)", st.Shards.Busiest)
	}
	close(hold)
	stopChain(t, src, s)
	k.check(t, 1+limit+capacity)
}

// A key is one however its integer is written: 7, "7", 7.0 and 7e0 are
// one row to db.postgres (stage.Value.AsInt), so one shard. 7.0 went by
// its text, to another shard in 255 runs of 256, and an upsert of it
// could overtake one of 7 read before it.
func TestShardKeyOfEqualIntegers(t *testing.T) {
	sh := newShards([]string{"id"})
	shard := func(v stage.Value) uint8 {
		ev := &stage.Event{}
		ev.SetValue("id", v)
		k, _ := sh.index(ev, nil)
		return k
	}
	want := shard(stage.IntValue(7))
	for _, v := range []stage.Value{stage.StringValue("7"), stage.NumberValue([]byte("7.0")),
		stage.NumberValue([]byte("7e0")), stage.FloatValue(7)} {
		if got := shard(v); got != want {
			t.Errorf("%v went to shard %d, 7 to %d", v, got, want)
		}
	}
	// Numbers that are no integers: PostgreSQL's numeric holds 7.5 and
	// 7.50 in one row, so their updates must stay in one shard's order.
	// (256 shards: a wrong key would land on 7.5's one time in 256 at
	// most; the other forms make a miss all but certain.)
	want = shard(stage.NumberValue([]byte("7.5")))
	for _, v := range []stage.Value{stage.NumberValue([]byte("7.50")), stage.StringValue("7.50"),
		stage.StringValue(" 7.500 "), stage.NumberValue([]byte("75e-1")), stage.FloatValue(7.5),
		stage.NumberValue([]byte("0.75e1"))} {
		if got := shard(v); got != want {
			t.Errorf("%v went to shard %d, 7.5 to %d", v, got, want)
		}
	}
	// Keys are read per event: one that is no number, even one that
	// looks like one at first (a date, a phone number, a version), costs
	// no allocation, and neither does a number.
	buf := make([]byte, 0, 64)
	for _, key := range []string{"user42", "2024-01-02", "555-1234", "1.2.3", "1e", "-", ".", "7.5", "75e-1", "12"} {
		ev := &stage.Event{}
		ev.SetValue("id", stage.StringValue(key))
		if n := testing.AllocsPerRun(20, func() { _, buf = sh.index(ev, buf) }); n != 0 {
			t.Errorf("the key %q costs %.0f allocations", key, n)
		}
	}
}
