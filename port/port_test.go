package port

// This file tests the port's semantics one by one (run slots, LIFO
// release, FIFO packets, GetBatch, Close), overflow, cancellation, stats,
// allocations and a stress run; and holds TestMain.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/poll"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var bg = context.Background()

// waitStats polls Stats until ok holds.
func waitStats[T any](t *testing.T, p *Port[T], what string, ok func(Stats) bool) {
	t.Helper()
	poll.Until(t, what, func() bool { return ok(p.Stats()) })
}

// postersWaiting reports how many Posts wait for room.
func (p *Port[T]) postersWaiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.posters.len
}

func mustPost[T any](t *testing.T, p *Port[T], v T) {
	t.Helper()
	if err := p.Post(bg, Packet[T]{Value: v}); err != nil {
		t.Fatalf("Post(%v): %v", v, err)
	}
}

// got is what a test worker received.
type got struct {
	worker int
	pk     Packet[int]
	err    error
}

// holder is a test worker that reports each Get and then holds its run
// slot until told to go on.
type holder struct {
	w    *Worker[int]
	id   int
	out  chan<- got
	next chan struct{} // one send per further Get
	done chan struct{}
}

func startHolder(p *Port[int], id int, out chan<- got) *holder {
	h := &holder{w: p.Join(), id: id, out: out, next: make(chan struct{}, 16), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer h.w.Leave()
		for {
			pk, err := h.w.Get(bg)
			h.out <- got{worker: id, pk: pk, err: err}
			if err != nil {
				return
			}
			if _, ok := <-h.next; !ok {
				return
			}
		}
	}()
	return h
}

// stop makes the holder leave after its current packet.
func (h *holder) stop() { close(h.next); <-h.done }

// stopAll stops holders that may wait for each other's slots.
func stopAll(hs []*holder) {
	for _, h := range hs {
		close(h.next)
	}
	for _, h := range hs {
		<-h.done
	}
}

func recv(t *testing.T, out <-chan got) got {
	t.Helper()
	select {
	case g := <-out:
		return g
	case <-time.After(10 * time.Second):
		t.Fatal("no worker received anything")
	}
	return got{}
}

// Semantic 1: at most Concurrency workers hold run slots; the rest wait
// with packets still queued, and a slot given up goes to a waiter.
func TestRunSlotLimit(t *testing.T) {
	p := New[int](Options{Concurrency: 2, Capacity: 16})
	out := make(chan got, 16)
	var hs []*holder
	for i := 0; i < 5; i++ {
		hs = append(hs, startHolder(p, i, out))
	}
	waitStats(t, p, "5 waiting", func(s Stats) bool { return s.Waiting == 5 })
	for i := 0; i < 5; i++ {
		mustPost(t, p, i)
	}
	waitStats(t, p, "2 running, 3 waiting", func(s Stats) bool { return s.Running == 2 && s.Waiting == 3 })
	if s := p.Stats(); s.Depth != 3 || s.Delivered != 2 {
		t.Fatalf("with 2 slots taken: %+v, want Depth 3 Delivered 2", s)
	}
	first := recv(t, out)
	recv(t, out)
	if len(out) != 0 {
		t.Fatalf("%d workers ran past the limit", len(out))
	}
	// One worker gives its slot up by calling Get: one packet more goes out,
	// and still only 2 run.
	hs[first.worker].next <- struct{}{}
	if g := recv(t, out); g.err != nil {
		t.Fatal(g.err)
	}
	waitStats(t, p, "2 running", func(s Stats) bool { return s.Running == 2 && s.Depth == 2 })
	p.Close()
	stopAll(hs)
}

// Semantic 1: a worker inside Blocking holds no slot; when fn returns it
// takes its slot back over the limit, and no waiter is released until the
// count is below the limit again.
func TestBlockingTakesSlotBackOverLimit(t *testing.T) {
	p := New[int](Options{Concurrency: 1, Capacity: 16})
	out := make(chan got, 16)

	a := p.Join()
	defer a.Leave()
	mustPost(t, p, 1)
	if pk, err := a.Get(bg); err != nil || pk.Value != 1 {
		t.Fatalf("Get = %v, %v", pk, err)
	}
	b := startHolder(p, 2, out)
	waitStats(t, p, "b waiting", func(s Stats) bool { return s.Waiting == 1 })
	mustPost(t, p, 2)
	if s := p.Stats(); s.Running != 1 || s.Waiting != 1 || s.Depth != 1 {
		t.Fatalf("a runs, b held back: %+v", s)
	}

	release := make(chan struct{})
	blockingDone := make(chan struct{})
	go func() {
		defer close(blockingDone)
		a.Blocking(func() { <-release })
	}()
	// a gave its slot away: b runs with packet 2.
	if g := recv(t, out); g.worker != 2 || g.pk.Value != 2 {
		t.Fatalf("b got %+v", g)
	}
	waitStats(t, p, "a blocked, b running", func(s Stats) bool { return s.Blocked == 1 && s.Running == 1 })

	mustPost(t, p, 3)
	close(release)
	<-blockingDone
	if s := p.Stats(); s.Running != 2 || s.Blocked != 0 || s.Depth != 1 {
		t.Fatalf("after Blocking: %+v, want Running 2 (over the limit), Depth 1", s)
	}
	// b gives its slot up: Running falls to 1, which is not below the limit,
	// so nobody takes packet 3.
	b.next <- struct{}{}
	waitStats(t, p, "b waiting", func(s Stats) bool { return s.Waiting == 1 })
	if s := p.Stats(); s.Running != 1 || s.Depth != 1 || s.Delivered != 2 {
		t.Fatalf("at the limit: %+v, want Running 1 Depth 1 Delivered 2", s)
	}
	// a gives its slot up: now the count is below the limit and packet 3
	// goes out, to b or to a itself.
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { _, err := a.Get(ctx); errc <- err }()
	waitStats(t, p, "packet 3 delivered", func(s Stats) bool { return s.Delivered == 3 && s.Depth == 0 })
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	p.Close()
	b.stop()
}

// Semantic 2: the worker that started waiting last is released first.
func TestLIFORelease(t *testing.T) {
	p := New[int](Options{Concurrency: 4, Capacity: 16})
	out := make(chan got, 16)
	var hs []*holder
	for i := 0; i < 3; i++ {
		hs = append(hs, startHolder(p, i, out))
		waitStats(t, p, "parked in order", func(s Stats) bool { return s.Waiting == i+1 })
	}
	for want := 2; want >= 0; want-- {
		mustPost(t, p, want)
		if g := recv(t, out); g.worker != want {
			t.Fatalf("worker %d released, want %d (last to wait)", g.worker, want)
		}
	}
	p.Close()
	stopAll(hs)
}

// Semantic 3: packets are delivered in the order they were posted, also
// those that waited for room.
func TestFIFOPackets(t *testing.T) {
	p := New[int](Options{Concurrency: 1, Capacity: 4})
	for i := 0; i < 4; i++ {
		mustPost(t, p, i)
	}
	// Three more Posts wait for room, in a known order.
	var wg sync.WaitGroup
	for i := 4; i < 7; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustPost(t, p, i)
		}()
		poll.Until(t, "poster waiting", func() bool { return p.postersWaiting() == i-3 })
	}
	// A TryPost may not overtake waiting Posts even when a Get made room.
	w := p.Join()
	defer w.Leave()
	for i := 0; i < 7; i++ {
		pk, err := w.Get(bg)
		if err != nil || pk.Value != i {
			t.Fatalf("Get %d = %v, %v", i, pk.Value, err)
		}
		if i == 0 {
			if err := p.TryPost(Packet[int]{Value: 99}); !errors.Is(err, ErrFull) {
				t.Fatalf("TryPost overtook waiting posters: %v", err)
			}
		}
	}
	wg.Wait()
}

// Semantic 4: GetBatch returns 1..len(buf) queued packets without waiting
// for more, in order.
func TestGetBatch(t *testing.T) {
	p := New[int](Options{Concurrency: 1, Capacity: 16})
	w := p.Join()
	defer w.Leave()
	buf := make([]Packet[int], 4)

	if _, err := w.GetBatch(bg, nil); err == nil {
		t.Fatal("GetBatch with an empty buffer succeeded")
	}
	for i := 0; i < 6; i++ {
		mustPost(t, p, i)
	}
	n, err := w.GetBatch(bg, buf)
	if err != nil || n != 4 {
		t.Fatalf("GetBatch = %d, %v; want 4", n, err)
	}
	n, err = w.GetBatch(bg, buf)
	if err != nil || n != 2 {
		t.Fatalf("GetBatch = %d, %v; want the 2 queued, without waiting", n, err)
	}
	for i, pk := range buf[:2] {
		if pk.Value != 4+i {
			t.Fatalf("buf[%d] = %d, want %d", i, pk.Value, 4+i)
		}
	}
	// On an empty port it waits for the first packet, then returns it alone.
	type res struct {
		n   int
		err error
	}
	r := make(chan res, 1)
	go func() {
		n, err := w.GetBatch(bg, buf)
		r <- res{n, err}
	}()
	waitStats(t, p, "batch waiting", func(s Stats) bool { return s.Waiting == 1 })
	mustPost(t, p, 42)
	if x := <-r; x.err != nil || x.n != 1 || buf[0].Value != 42 {
		t.Fatalf("GetBatch = %d, %v, %d; want 1 packet 42", x.n, x.err, buf[0].Value)
	}
	if s := p.Stats(); s.Delivered != 7 {
		t.Fatalf("Delivered = %d, want 7 (packets, not batches)", s.Delivered)
	}
}

// Semantic 5: after Close, posts fail; what was queued is delivered, then
// Get and GetBatch return ErrClosed.
func TestCloseDrainsThenErrClosed(t *testing.T) {
	p := New[int](Options{Capacity: 8})
	for i := 0; i < 3; i++ {
		mustPost(t, p, i)
	}
	p.Close()
	if err := p.Post(bg, Packet[int]{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Post after Close = %v", err)
	}
	if err := p.TryPost(Packet[int]{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryPost after Close = %v", err)
	}
	w := p.Join()
	defer w.Leave()
	if pk, err := w.Get(bg); err != nil || pk.Value != 0 {
		t.Fatalf("Get = %v, %v", pk, err)
	}
	buf := make([]Packet[int], 8)
	if n, err := w.GetBatch(bg, buf); err != nil || n != 2 || buf[1].Value != 2 {
		t.Fatalf("GetBatch = %d, %v", n, err)
	}
	if _, err := w.Get(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a drained port = %v", err)
	}
	if _, err := w.GetBatch(bg, buf); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetBatch on a drained port = %v", err)
	}
	if s := p.Stats(); s.Posted != 3 || s.Delivered != 3 || s.Depth != 0 {
		t.Fatalf("Stats = %+v", s)
	}
}

// Semantic 5: Close wakes parked workers, also those held back by the limit
// once nothing is left for them.
func TestCloseWakesWaiters(t *testing.T) {
	p := New[int](Options{Concurrency: 1})
	out := make(chan got, 8)
	var hs []*holder
	for i := 0; i < 3; i++ {
		hs = append(hs, startHolder(p, i, out))
	}
	waitStats(t, p, "3 waiting", func(s Stats) bool { return s.Waiting == 3 })
	p.Close()
	for i := 0; i < 3; i++ {
		if g := recv(t, out); !errors.Is(g.err, ErrClosed) {
			t.Fatalf("woken worker got %+v, want ErrClosed", g)
		}
	}
	for _, h := range hs {
		<-h.done
	}
	if s := p.Stats(); s.Waiting != 0 {
		t.Fatalf("Waiting = %d after Close", s.Waiting)
	}
}

// Semantics 5 and 8: a Post waiting for room when Close is called returns
// ErrClosed and enqueues nothing.
func TestCloseFailsWaitingPosters(t *testing.T) {
	p := New[int](Options{Capacity: 1})
	mustPost(t, p, 0)
	errs := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		go func() { errs <- p.Post(bg, Packet[int]{Value: i}) }()
	}
	poll.Until(t, "2 posters waiting", func() bool { return p.postersWaiting() == 2 })
	p.Close()
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Post = %v, want ErrClosed", err)
		}
	}
	w := p.Join()
	defer w.Leave()
	if pk, err := w.Get(bg); err != nil || pk.Value != 0 {
		t.Fatalf("Get = %v, %v", pk, err)
	}
	if _, err := w.Get(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("a failed Post enqueued its packet: %v", err)
	}
	if s := p.Stats(); s.Posted != 1 {
		t.Fatalf("Posted = %d, want 1", s.Posted)
	}
}

// Semantic 8: Close and Leave are idempotent; Leave gives the slot up, and
// Get after Leave fails.
func TestCloseAndLeaveIdempotent(t *testing.T) {
	p := New[int](Options{Concurrency: 1})
	out := make(chan got, 4)
	mustPost(t, p, 1)
	mustPost(t, p, 2)
	a := p.Join()
	if _, err := a.Get(bg); err != nil {
		t.Fatal(err)
	}
	b := startHolder(p, 2, out)
	waitStats(t, p, "b held back", func(s Stats) bool { return s.Waiting == 1 && s.Depth == 1 })
	a.Leave()
	if g := recv(t, out); g.pk.Value != 2 {
		t.Fatalf("after Leave b got %+v", g)
	}
	a.Leave()
	if s := p.Stats(); s.Running != 1 {
		t.Fatalf("a second Leave changed Running: %+v", s)
	}
	if _, err := a.Get(bg); err == nil {
		t.Fatal("Get after Leave succeeded")
	}
	p.Close()
	p.Close()
	if err := p.TryPost(Packet[int]{}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	b.stop()
}

// Semantic 8: a worker joined after Close drains what is queued.
func TestJoinAfterClose(t *testing.T) {
	p := New[int](Options{})
	mustPost(t, p, 7)
	mustPost(t, p, 8)
	p.Close()
	w := p.Join()
	defer w.Leave()
	for _, want := range []int{7, 8} {
		if pk, err := w.Get(bg); err != nil || pk.Value != want {
			t.Fatalf("Get = %v, %v; want %d", pk.Value, err, want)
		}
	}
	if _, err := w.Get(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get = %v, want ErrClosed", err)
	}
}

// Overflow Reject refuses at once and counts the refusal.
func TestOverflowReject(t *testing.T) {
	p := New[int](Options{Capacity: 2, Overflow: Reject})
	mustPost(t, p, 1)
	mustPost(t, p, 2)
	if err := p.Post(bg, Packet[int]{Value: 3}); !errors.Is(err, ErrFull) {
		t.Fatalf("Post on a full Reject port = %v", err)
	}
	if s := p.Stats(); s.Depth != 2 || s.Posted != 2 || s.Rejected != 1 {
		t.Fatalf("Stats = %+v", s)
	}
}

// Overflow Block waits for room and proceeds when a Get makes it.
func TestOverflowBlock(t *testing.T) {
	p := New[int](Options{Capacity: 1})
	mustPost(t, p, 1)
	errc := make(chan error, 1)
	go func() { errc <- p.Post(bg, Packet[int]{Value: 2}) }()
	poll.Until(t, "poster waiting", func() bool { return p.postersWaiting() == 1 })
	if s := p.Stats(); s.Depth != 1 || s.Posted != 1 {
		t.Fatalf("a waiting Post is queued: %+v", s)
	}
	w := p.Join()
	defer w.Leave()
	if pk, _ := w.Get(bg); pk.Value != 1 {
		t.Fatalf("Get = %d", pk.Value)
	}
	if err := <-errc; err != nil {
		t.Fatalf("blocked Post = %v", err)
	}
	if pk, _ := w.Get(bg); pk.Value != 2 {
		t.Fatalf("Get = %d", pk.Value)
	}
}

// TryPost never waits, whatever the Overflow.
func TestTryPost(t *testing.T) {
	p := New[int](Options{Capacity: 1, Overflow: Block})
	if err := p.TryPost(Packet[int]{Value: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.TryPost(Packet[int]{Value: 2}); !errors.Is(err, ErrFull) {
		t.Fatalf("TryPost on a full port = %v", err)
	}
	if s := p.Stats(); s.Rejected != 1 || s.Posted != 1 {
		t.Fatalf("Stats = %+v", s)
	}
	p.Close()
	if err := p.TryPost(Packet[int]{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryPost after Close = %v", err)
	}
}

// Semantic 6: a cancelled Post returns ctx.Err() and enqueues nothing; the
// posters behind it are not disturbed.
func TestPostCancel(t *testing.T) {
	p := New[int](Options{Capacity: 1})
	mustPost(t, p, 1)

	done, cancel := context.WithCancel(bg)
	cancel()
	if err := p.Post(done, Packet[int]{Value: 9}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Post with a done ctx = %v", err)
	}

	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 2)
	go func() { errc <- p.Post(ctx, Packet[int]{Value: 2}) }()
	poll.Until(t, "poster waiting", func() bool { return p.postersWaiting() == 1 })
	go func() { errc <- p.Post(bg, Packet[int]{Value: 3}) }()
	poll.Until(t, "2 posters waiting", func() bool { return p.postersWaiting() == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Post = %v", err)
	}
	if s := p.Stats(); s.Posted != 1 || s.Depth != 1 {
		t.Fatalf("a cancelled Post changed the queue: %+v", s)
	}
	w := p.Join()
	defer w.Leave()
	for _, want := range []int{1, 3} {
		if pk, err := w.Get(bg); err != nil || pk.Value != want {
			t.Fatalf("Get = %v, %v; want %d", pk.Value, err, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Depth != 0 || s.Posted != 2 {
		t.Fatalf("Stats = %+v", s)
	}
}

// Semantics 6 and 8: a cancelled Get or GetBatch returns ctx.Err(),
// dequeues nothing and stops waiting.
func TestGetCancel(t *testing.T) {
	p := New[int](Options{Concurrency: 1})
	w := p.Join()
	defer w.Leave()

	mustPost(t, p, 1)
	done, cancel := context.WithCancel(bg)
	cancel()
	if _, err := w.Get(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a done ctx = %v", err)
	}
	if _, err := w.GetBatch(done, make([]Packet[int], 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetBatch with a done ctx = %v", err)
	}
	if s := p.Stats(); s.Depth != 1 || s.Delivered != 0 {
		t.Fatalf("a cancelled Get dequeued: %+v", s)
	}
	if pk, err := w.Get(bg); err != nil || pk.Value != 1 {
		t.Fatal(pk, err)
	}

	for _, batch := range []bool{false, true} {
		ctx, cancel := context.WithCancel(bg)
		errc := make(chan error, 1)
		go func() {
			var err error
			if batch {
				_, err = w.GetBatch(ctx, make([]Packet[int], 2))
			} else {
				_, err = w.Get(ctx)
			}
			errc <- err
		}()
		waitStats(t, p, "worker waiting", func(s Stats) bool { return s.Waiting == 1 })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait = %v", err)
		}
		if s := p.Stats(); s.Waiting != 0 || s.Running != 0 || s.Delivered != 1 {
			t.Fatalf("after a cancelled wait: %+v", s)
		}
	}
	// The port works on.
	mustPost(t, p, 2)
	if pk, err := w.Get(bg); err != nil || pk.Value != 2 {
		t.Fatal(pk, err)
	}
}

// Stats reports each gauge and total.
func TestStats(t *testing.T) {
	p := New[int](Options{Concurrency: 2, Capacity: 3, Overflow: Reject})
	for i := 0; i < 4; i++ {
		_ = p.TryPost(Packet[int]{Value: i})
	}
	a, b := p.Join(), p.Join()
	defer a.Leave()
	defer b.Leave()
	if _, err := a.GetBatch(bg, make([]Packet[int], 2)); err != nil {
		t.Fatal(err)
	}
	want := Stats{Depth: 1, Capacity: 3, Concurrency: 2, Running: 1, Posted: 3, Delivered: 2, Rejected: 1}
	if s := p.Stats(); s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
	in, out := make(chan struct{}), make(chan struct{})
	go a.Blocking(func() { in <- struct{}{}; <-out })
	<-in
	if s := p.Stats(); s.Running != 0 || s.Blocked != 1 {
		t.Fatalf("inside Blocking: %+v", s)
	}
	out <- struct{}{}
	waitStats(t, p, "Blocking returned", func(s Stats) bool { return s.Blocked == 0 && s.Running == 1 })
	if _, err := b.Get(bg); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := a.Get(bg); errc <- err }()
	waitStats(t, p, "a waiting", func(s Stats) bool { return s.Waiting == 1 })
	want = Stats{Capacity: 3, Concurrency: 2, Running: 1, Waiting: 1, Posted: 3, Delivered: 3, Rejected: 1}
	if s := p.Stats(); s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
	p.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// The zero Options is valid: Concurrency GOMAXPROCS, Capacity
// DefaultCapacity, Block.
func TestZeroOptions(t *testing.T) {
	p := New[int](Options{})
	if s := p.Stats(); s.Capacity != DefaultCapacity {
		t.Fatalf("Capacity = %d", s.Capacity)
	}
	n := runtime.GOMAXPROCS(0)
	out := make(chan got, n+1)
	var hs []*holder
	for i := 0; i <= n; i++ {
		hs = append(hs, startHolder(p, i, out))
		mustPost(t, p, i)
	}
	waitStats(t, p, "GOMAXPROCS running", func(s Stats) bool { return s.Running == n && s.Waiting == 1 })
	for p.TryPost(Packet[int]{}) == nil {
	}
	if s := p.Stats(); s.Depth != DefaultCapacity {
		t.Fatalf("full at Depth %d", s.Depth)
	}
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { errc <- p.Post(ctx, Packet[int]{}) }()
	poll.Until(t, "Post blocks", func() bool { return p.postersWaiting() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	p.Close()
	stopAll(hs)
}

// Semantic 7: Post and Get allocate nothing in steady state, also when a
// parked worker is woken.
func TestNoAllocs(t *testing.T) {
	p := New[[4]uint64](Options{Concurrency: 1, Capacity: 8})
	w := p.Join()
	defer w.Leave()
	pk := Packet[[4]uint64]{Key: 1, N: 2}
	if a := testing.AllocsPerRun(1000, func() {
		_ = p.Post(bg, pk)
		_, _ = w.Get(bg)
	}); a != 0 {
		t.Fatalf("Post+Get: %v allocs", a)
	}
	buf := make([]Packet[[4]uint64], 4)
	if a := testing.AllocsPerRun(1000, func() {
		_ = p.Post(bg, pk)
		_ = p.TryPost(pk)
		_, _ = w.GetBatch(bg, buf)
	}); a != 0 {
		t.Fatalf("Post+TryPost+GetBatch: %v allocs", a)
	}

	// Hand-off to a parked worker.
	q := New[int](Options{Capacity: 1})
	ack := make(chan struct{})
	go func() {
		w := q.Join()
		defer w.Leave()
		for {
			if _, err := w.Get(bg); err != nil {
				close(ack)
				return
			}
			ack <- struct{}{}
		}
	}()
	if a := testing.AllocsPerRun(200, func() {
		_ = q.Post(bg, Packet[int]{})
		<-ack
	}); a != 0 {
		t.Fatalf("hand-off: %v allocs", a)
	}
	q.Close()
	<-ack
}

// Many producers and workers: every packet is delivered once and no more
// than Concurrency workers ever run at once.
func TestStress(t *testing.T) {
	const (
		producers = 4
		workers   = 8
		conc      = 3
		each      = 5000
	)
	for _, o := range []Options{
		{Concurrency: conc, Capacity: 16},
		{Concurrency: conc, Capacity: 1},
		{Concurrency: conc, Capacity: 64, Overflow: Reject},
	} {
		p := New[int](o)
		var sum, count, active, maxActive atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := p.Join()
				defer w.Leave()
				buf := make([]Packet[int], 1+i%3)
				for {
					n, err := w.GetBatch(bg, buf)
					if err != nil {
						return
					}
					a := active.Add(1)
					for m := maxActive.Load(); a > m && !maxActive.CompareAndSwap(m, a); m = maxActive.Load() {
					}
					for _, pk := range buf[:n] {
						sum.Add(int64(pk.Value))
						count.Add(1)
					}
					active.Add(-1)
				}
			}()
		}
		var pwg sync.WaitGroup
		var posted atomic.Int64
		for i := 0; i < producers; i++ {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				for j := 1; j <= each; j++ {
					for p.Post(bg, Packet[int]{Value: j}) != nil {
						runtime.Gosched() // Reject: try again
					}
					posted.Add(int64(j))
				}
			}()
		}
		pwg.Wait()
		p.Close()
		wg.Wait()
		if count.Load() != producers*each || sum.Load() != posted.Load() {
			t.Fatalf("%+v: delivered %d packets summing %d, want %d summing %d", o, count.Load(), sum.Load(), producers*each, posted.Load())
		}
		if m := maxActive.Load(); m > conc {
			t.Fatalf("%+v: %d workers ran at once, limit %d", o, m, conc)
		}
		if s := p.Stats(); s.Running != 0 || s.Waiting != 0 || s.Depth != 0 || s.Delivered != producers*each {
			t.Fatalf("%+v: final %+v", o, s)
		}
	}
}

func TestPostBatch(t *testing.T) {
	ctx := context.Background()
	mk := func(from, to int) []Packet[int] {
		var pks []Packet[int]
		for i := from; i < to; i++ {
			pks = append(pks, Packet[int]{Value: i})
		}
		return pks
	}
	t.Run("reject", func(t *testing.T) {
		p := New[int](Options{Capacity: 4, Overflow: Reject})
		n, err := p.PostBatch(ctx, mk(0, 6))
		if n != 4 || !errors.Is(err, ErrFull) || p.Stats().Rejected != 2 || p.Stats().Depth != 4 {
			t.Fatalf("n %d err %v stats %+v", n, err, p.Stats())
		}
	})
	t.Run("block keeps order", func(t *testing.T) {
		p := New[int](Options{Capacity: 3, Concurrency: 1})
		done := make(chan error, 1)
		go func() {
			_, err := p.PostBatch(ctx, mk(0, 10))
			done <- err
		}()
		w := p.Join()
		defer w.Leave()
		for want := 0; want < 10; want++ {
			pk, err := w.Get(ctx)
			if err != nil || pk.Value != want {
				t.Fatalf("got %d %v, want %d", pk.Value, err, want)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("one wake hands a batch", func(t *testing.T) {
		p := New[int](Options{Capacity: 64, Concurrency: 1})
		w := p.Join()
		defer w.Leave()
		got := make(chan int, 1)
		go func() {
			buf := make([]Packet[int], 64)
			n, _ := w.GetBatch(ctx, buf)
			got <- n
		}()
		for p.Stats().Waiting != 1 {
			runtime.Gosched()
		}
		if n, err := p.PostBatch(ctx, mk(0, 10)); n != 10 || err != nil {
			t.Fatal(n, err)
		}
		if n := <-got; n != 10 {
			t.Fatalf("the parked worker was handed %d packets, want all 10", n)
		}
	})
	t.Run("closed", func(t *testing.T) {
		p := New[int](Options{})
		p.Close()
		if n, err := p.PostBatch(ctx, mk(0, 2)); n != 0 || !errors.Is(err, ErrClosed) {
			t.Fatal(n, err)
		}
	})
}

// Every field of every packet arrives as posted, whichever of Key, N and
// Err are set, through each way into and out of the ring: Post, TryPost,
// PostBatch, a Post that waited for room, Get, GetBatch and the hand-off to
// a parked worker, with the ring wrapping around; a slot that held a packet
// with Key, N or Err set gives nothing of it to a later packet without.
func TestPacketFields(t *testing.T) {
	e1, e2 := errors.New("e1"), errors.New("e2")
	mk := func(i int) Packet[int] {
		pk := Packet[int]{Value: i}
		switch i % 5 {
		case 1:
			pk.Key = uint64(i)
		case 2:
			pk.N = -i
		case 3:
			pk.Err = e1
		case 4:
			pk.Key, pk.N, pk.Err = uint64(i)<<40, i, e2
		}
		return pk
	}
	p := New[int](Options{Concurrency: 1, Capacity: 3})
	w := p.Join()
	defer w.Leave()
	next := 0 // the next packet expected
	check := func(pk Packet[int]) {
		t.Helper()
		if want := mk(next); pk != want {
			t.Fatalf("packet %d = %+v, want %+v", next, pk, want)
		}
		next++
	}
	buf := make([]Packet[int], 2)
	i := 0
	for round := 0; round < 20; round++ {
		// Fill the ring three ways, one Post waiting for room behind it.
		if err := p.Post(bg, mk(i)); err != nil {
			t.Fatal(err)
		}
		if err := p.TryPost(mk(i + 1)); err != nil {
			t.Fatal(err)
		}
		if n, err := p.PostBatch(bg, []Packet[int]{mk(i + 2)}); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		done := make(chan error, 1)
		go func(pk Packet[int]) { done <- p.Post(bg, pk) }(mk(i + 3))
		poll.Until(t, "poster waiting", func() bool { return p.postersWaiting() == 1 })
		i += 4
		// Drain with Get and GetBatch; the first Get refills the ring from
		// the waiting Post.
		for k := 0; k < 2; k++ {
			pk, err := w.Get(bg)
			if err != nil {
				t.Fatal(err)
			}
			check(pk)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		n, err := w.GetBatch(bg, buf)
		if err != nil || n != 2 {
			t.Fatalf("GetBatch = %d, %v", n, err)
		}
		for _, pk := range buf[:n] {
			check(pk)
		}
		// A parked worker is handed the next packet directly.
		got := make(chan Packet[int], 1)
		go func() {
			pk, err := w.Get(bg)
			if err != nil {
				t.Error(err)
			}
			got <- pk
		}()
		waitStats(t, p, "worker parked", func(s Stats) bool { return s.Waiting == 1 })
		if err := p.Post(bg, mk(i)); err != nil {
			t.Fatal(err)
		}
		i++
		check(<-got)
	}
}

// A delivered packet leaves no reference behind in the port: its Value and
// Err can be collected while the port lives on.
func TestDeliveredPacketsCollectable(t *testing.T) {
	type payload struct{ _ [64]byte }
	type boxErr struct {
		error
		_ [64]byte
	}
	p := New[*payload](Options{Concurrency: 1, Capacity: 4})
	w := p.Join()
	defer w.Leave()
	var ws []weak.Pointer[payload]
	var we []weak.Pointer[boxErr]
	for i := 0; i < 6; i++ { // wraps the ring
		v, e := &payload{}, &boxErr{error: errors.New("x")}
		ws, we = append(ws, weak.Make(v)), append(we, weak.Make(e))
		if err := p.Post(bg, Packet[*payload]{Key: 1, Value: v, Err: e}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := w.Get(bg); err != nil {
				t.Fatal(err)
			}
		} else {
			if n, err := w.GetBatch(bg, make([]Packet[*payload], 4)); n != 1 || err != nil {
				t.Fatal(n, err)
			}
		}
	}
	runtime.GC()
	runtime.GC()
	for i := range ws {
		if ws[i].Value() != nil || we[i].Value() != nil {
			t.Fatalf("packet %d still referenced after delivery", i)
		}
	}
	runtime.KeepAlive(p)
}

// Acquire gives a worker that holds packets but no run slot (its GetBatch
// went on waiting for more, giving its slot up) a slot before it runs:
// at once when one is free, else once one is given up, before a worker
// coming back for more packets keeps it.
func TestAcquire(t *testing.T) {
	p := New[int](Options{Concurrency: 1, Capacity: 16})
	a, c, d := p.Join(), p.Join(), p.Join()
	defer d.Leave()
	if err := c.Acquire(bg); err != nil { // a free slot
		t.Fatal(err)
	}
	if err := c.Acquire(bg); err != nil || p.Stats().Running != 1 { // held already
		t.Fatalf("Acquire while holding: %v, %+v", err, p.Stats())
	}
	mustPost(t, p, 1)
	if _, err := c.Get(bg); err != nil { // c gives its slot up and takes it back with packet 1
		t.Fatal(err)
	}
	// c holds the only slot; a waits for one in Acquire.
	acquired := make(chan error, 1)
	go func() { acquired <- a.Acquire(bg) }()
	waitStats(t, p, "a waiting for a slot", func(s Stats) bool { return s.Waiting == 1 })
	mustPost(t, p, 2)
	// c comes back for more with packet 2 queued: its slot goes to a, and
	// c waits, packet 2 still queued.
	gotPk := make(chan int, 1)
	go func() {
		pk, err := c.Get(bg)
		if err != nil {
			t.Error(err)
		}
		gotPk <- pk.Value
	}()
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	waitStats(t, p, "c waiting, packet 2 queued", func(s Stats) bool { return s.Waiting == 1 && s.Running == 1 && s.Depth == 1 })

	// A cancelled Acquire takes no slot and leaves no waiter.
	ctx, cancel := context.WithCancel(bg)
	go func() { acquired <- d.Acquire(ctx) }()
	waitStats(t, p, "d waiting for a slot", func(s Stats) bool { return s.Waiting == 2 })
	cancel()
	if err := <-acquired; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", err)
	}
	if s := p.Stats(); s.Running != 1 || s.Waiting != 1 {
		t.Fatalf("after a cancelled Acquire: %+v, want a running, c waiting", s)
	}
	// a is done with what it held: c runs with packet 2.
	a.Leave()
	if v := <-gotPk; v != 2 {
		t.Fatalf("c got %d, want 2", v)
	}
	c.Leave()
}
