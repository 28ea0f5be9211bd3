package engine

// This file tests the memory limit: what events are charged and when it
// is released, the doors past the limit, queues bounded in bytes, and the
// Input adapter's stop.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// memSource returns a source stage (no Source: the test makes its
// events) counted against m.
func memSource(m *Memory) (*Stage, Lifecycle) {
	s, l := NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	l.UseMemory(m)
	return s, l
}

// An event is charged its payload, and what Hold adds, from its making
// to its finish, by Done or DoneAll; the source's figure and the
// pipeline's agree.
func TestMemoryChargedUntilFinished(t *testing.T) {
	m := NewMemory(0, false, "test")
	src, _ := memSource(m)
	rt := sourceRuntime{src}
	a := rt.NewEvent(make([]byte, 100), 1, stage.Origin{})
	b := rt.NewEvent(make([]byte, 50), 2, stage.Origin{})
	c := rt.NewEvent(make([]byte, 7), 3, stage.Origin{})
	rt.Hold(b, 1000) // b keeps a buffer of its own besides its payload
	if got := m.Held(); got != 1157 {
		t.Fatalf("held %d, want 1157", got)
	}
	if st := src.Stats(); st.HeldBytes != 1157 {
		t.Fatalf("source held %d, want 1157", st.HeldBytes)
	}
	a.Done(nil)
	if got := m.Held(); got != 1057 {
		t.Fatalf("held %d after a's Done, want 1057", got)
	}
	stage.DoneAll([]*stage.Event{b, c}, errors.New("refused"))
	if got := m.Held(); got != 0 {
		t.Fatalf("held %d after DoneAll, want 0", got)
	}
	a.Done(nil) // a second Done releases nothing twice
	if got := m.Held(); got != 0 {
		t.Fatalf("held %d after a second Done, want 0", got)
	}
	if st := m.Stats(); st.LimitBytes != 0 || st.Basis != "test" || st.Overflow != "reject" {
		t.Fatalf("stats %+v", st)
	}
}

// Past the limit the door refuses what was read (counted); once the
// events held are finished, it admits again.
func TestMemoryDoorRefuses(t *testing.T) {
	m := NewMemory(100, false, "test")
	src, _ := memSource(m)
	rt := sourceRuntime{src}
	now := time.Now()
	if got := rt.Admit(now, 3); got != 3 {
		t.Fatalf("under the limit: admitted %d of 3", got)
	}
	ev := rt.NewEvent(make([]byte, 100), 1, stage.Origin{})
	if got := rt.Admit(now, 3); got != 0 {
		t.Fatalf("at the limit: admitted %d of 3, want 0", got)
	}
	if st := m.Stats(); st.Refused != 3 || st.HeldBytes != 100 {
		t.Fatalf("stats %+v, want 3 refused, 100 held", st)
	}
	ev.Done(nil)
	if got := rt.Admit(now, 3); got != 3 {
		t.Fatalf("after the finish: admitted %d of 3", got)
	}
}

// Under overflow block the door holds the read back until the pipeline
// holds less (woken by the finish), and lets it go when the source stops
// taking input; a source under admission control refuses instead.
func TestMemoryDoorBlocks(t *testing.T) {
	m := NewMemory(100, true, "test")
	src, l := memSource(m)
	rt := sourceRuntime{src}
	ev := rt.NewEvent(make([]byte, 150), 1, stage.Origin{})
	admitted := make(chan int, 1)
	go func() { admitted <- rt.Admit(time.Now(), 4) }()
	poll.Until(t, "the door waiting", m.Waiting)
	select {
	case n := <-admitted:
		t.Fatalf("admitted %d while over the limit", n)
	default:
	}
	ev.Done(nil)
	if n := <-admitted; n != 4 {
		t.Fatalf("admitted %d of 4 once under the limit", n)
	}

	ev = rt.NewEvent(make([]byte, 150), 2, stage.Origin{})
	go func() { admitted <- rt.Admit(time.Now(), 2) }()
	poll.Until(t, "the door waiting", m.Waiting)
	if err := l.StopInput(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := <-admitted; n != 2 {
		t.Fatalf("admitted %d of 2 at StopInput: what was read is emitted", n)
	}
	if st := m.Stats(); st.Waits != 2 || st.Refused != 0 || st.Overflow != "block" {
		t.Fatalf("stats %+v", st)
	}
	ev.Done(nil)

	// Under admission control the door never waits.
	asrc, al := memSource(m)
	art := sourceRuntime{asrc}
	art.StartAdmission(time.Second)
	defer al.Close()
	ev = art.NewEvent(make([]byte, 150), 1, stage.Origin{})
	if n := art.Admit(time.Now(), 5); n != 0 {
		t.Fatalf("under admission control: admitted %d past the limit", n)
	}
	if st := m.Stats(); st.Refused != 5 {
		t.Fatalf("refused %d, want 5", st.Refused)
	}
	ev.Done(nil)
}

// Bytes a source holds of records it is still reading (HoldReading) are
// held: the figures show them and a door refuses past the limit they
// make. Under overflow block the door does not wait on them, since only
// the source's own reading releases them, and that may be what waits;
// it waits on the events' bytes alone.
func TestMemoryReadingBytes(t *testing.T) {
	m := NewMemory(100, false, "test")
	src, _ := memSource(m)
	rt := sourceRuntime{src}
	rt.HoldReading(150)
	if st := src.Stats(); m.Held() != 150 || st.HeldBytes != 150 {
		t.Fatalf("held %d, source %d; want 150 being read", m.Held(), st.HeldBytes)
	}
	if n := rt.Admit(time.Now(), 2); n != 0 {
		t.Fatalf("past the limit in bytes being read: admitted %d of 2", n)
	}
	rt.ReleaseReading(150)
	ev := rt.NewEvent(make([]byte, 150), 1, stage.Origin{}) // the record, read
	if m.Held() != 150 {
		t.Fatalf("held %d once the record is an event, want 150: counted once", m.Held())
	}
	ev.Done(nil)
	if m.Held() != 0 {
		t.Fatalf("held %d at the end, want 0", m.Held())
	}

	b := NewMemory(100, true, "test")
	bsrc, _ := memSource(b)
	brt := sourceRuntime{bsrc}
	brt.HoldReading(150)
	admitted := make(chan int, 1)
	go func() { admitted <- brt.Admit(time.Now(), 2) }()
	var n int
	poll.Until(t, "the door admitting, or waiting", func() bool {
		select {
		case n = <-admitted:
			return true
		default:
			return b.Waiting()
		}
	})
	if n != 2 {
		brt.ReleaseReading(150) // lets the door go
		t.Fatalf("under block past the limit in bytes being read: the door waits (admitted %d of 2), on what only the reading it holds back would release", <-admitted)
	}
	if st := b.Stats(); st.Waits != 0 || st.HeldBytes != 150 {
		t.Fatalf("stats %+v: want no wait, 150 held", st)
	}
	ev = brt.NewEvent(make([]byte, 150), 1, stage.Origin{})
	go func() { admitted <- brt.Admit(time.Now(), 1) }()
	poll.Until(t, "the door waiting on the events' bytes", b.Waiting)
	ev.Done(nil)
	if n := <-admitted; n != 1 {
		t.Fatalf("admitted %d of 1 once the event was finished", n)
	}
	brt.ReleaseReading(150)
	if b.Held() != 0 {
		t.Fatalf("held %d at the end, want 0", b.Held())
	}
}

// A queue with max_bytes is full once the payloads queued add up to it:
// under overflow reject the emitter's events are refused busy; /stats
// shows the bytes queued.
func TestQueueMaxBytes(t *testing.T) {
	g := newGate()
	sink := newHandlerStage(stage.Settings{Name: "sink", Workers: 1, Concurrency: 1, Batch: 1, Capacity: 100,
		MaxBytes: 1000, Overflow: 1 /* reject */}, g, nil)
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	src.connect(sink, nil)
	if err := sink.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(g.release)
		sink.closeQueue()
		sink.wg.Wait()
	}()
	res := newResults()
	em := src.NewEmitter()
	emit := func(seq uint64) {
		em.Emit(context.Background(), src.NewEvent(make([]byte, 400), seq, stage.Origin{To: res}))
		em.Flush(context.Background())
	}
	emit(1)
	<-g.calls // the worker holds event 1: the queue is empty again
	for seq := uint64(2); seq <= 5; seq++ {
		emit(seq) // 2, 3 and 4 fit (under 1000 bytes before each); 5 finds 1200
	}
	if st := sink.Stats().Queue; st.Bytes != 1200 || st.MaxBytes != 1000 || st.Depth != 3 {
		t.Fatalf("queue %+v, want 1200 bytes of 1000 in 3 events", st)
	}
	if errs := res.get(5); len(errs) != 1 || !errors.Is(errs[0], stage.ErrBusy) {
		t.Fatalf("event 5: %v, want busy", errs)
	}
}

// gatedInput is an Input of endless records of size bytes that counts
// its reads.
type gatedInput struct {
	size  int
	reads atomic.Int64
}

func (g *gatedInput) Connect(context.Context) error { return nil }
func (g *gatedInput) Close() error                  { return nil }
func (g *gatedInput) Read(ctx context.Context) ([]byte, func(error), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	g.reads.Add(1)
	return make([]byte, g.size), nil, nil
}

// Past the limit an Input is not read until the pipeline holds less:
// its records stay bounded by the limit (and a read).
func TestInputStopsAtMemoryLimit(t *testing.T) {
	release := make(chan struct{})
	sink, sl := NewHandlerStage(stage.Settings{Name: "sink", Workers: 1, Concurrency: 1, Batch: 1, Terminal: true},
		stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
			<-release
			stage.DoneAll(b, nil)
			return nil
		}), nil)
	in := &gatedInput{size: 100}
	m := NewMemory(1000, false, "test") // reject: an Input stops reading either way
	src, il := NewInputStage(stage.Settings{Name: "in", Batch: 1}, in, nil)
	il.UseMemory(m)
	il.Connect(sink, nil)
	ctx := context.Background()
	for _, l := range []Lifecycle{sl, il} {
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "the reader held back", m.Waiting)
	reads := in.reads.Load()
	if held := m.Held(); held < 1000 || held > 1000+2*100 {
		t.Fatalf("held %d bytes: want the limit of 1000 and a read or two", held)
	}
	close(release) // the sink finishes what it holds: reading resumes
	poll.Until(t, "reading resumed", func() bool { return in.reads.Load() > reads })
	if err := il.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	sl.CloseQueue()
	sl.Wait()
	if err := il.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := il.Close(); err != nil {
		t.Fatal(err)
	}
	if held := m.Held(); held != 0 || src.InFlight() != 0 {
		t.Fatalf("held %d, in flight %d after the drain", held, src.InFlight())
	}
}

// Past the limit WaitMemoryRoom holds a source back while its own events
// hold some of the bytes, and lets it go once they are finished even if
// other sources' events keep the pipeline over: it never waits on bytes
// only others can release (in one process a queue's front may wait on its
// consumer). Under the limit it does not wait, and StopInput ends a wait.
func TestWaitMemoryRoomWaitsOnOwnEvents(t *testing.T) {
	m := NewMemory(100, false, "test") // reject: the consumer waits either way
	front, _ := memSource(m)
	back, bl := memSource(m)
	frt, brt := sourceRuntime{front}, sourceRuntime{back}
	wait := func() chan struct{} {
		done := make(chan struct{})
		go func() { brt.WaitMemoryRoom(); close(done) }()
		return done
	}
	returned := func(what string, done chan struct{}) {
		t.Helper()
		poll.Until(t, what, func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		})
	}

	f := frt.NewEvent(make([]byte, 150), 1, stage.Origin{})
	returned("no wait while only the front's events hold the bytes", wait())

	b := brt.NewEvent(make([]byte, 10), 1, stage.Origin{})
	done := wait()
	poll.Until(t, "the back waiting on its own events", m.Waiting)
	select {
	case <-done:
		t.Fatal("WaitMemoryRoom returned while the back's own events held bytes past the limit")
	default:
	}
	b.Done(nil)
	returned("the back going on once its own events are finished, the front's still held", done)

	b = brt.NewEvent(make([]byte, 10), 2, stage.Origin{})
	done = wait()
	poll.Until(t, "the back waiting", m.Waiting)
	f.Done(nil)
	returned("the back going on once the pipeline is under its limit", done)

	f = frt.NewEvent(make([]byte, 150), 2, stage.Origin{})
	done = wait()
	poll.Until(t, "the back waiting", m.Waiting)
	if err := bl.StopInput(context.Background()); err != nil {
		t.Fatal(err)
	}
	returned("the wait ended by StopInput", done)
	if st := m.Stats(); st.Waits != 3 || st.Refused != 0 {
		t.Fatalf("stats %+v, want 3 waits and nothing refused", st)
	}
	stage.DoneAll([]*stage.Event{f, b}, nil)
}

// A window in which the memory limit refused every record a source under
// admission control was offered (another source's events hold the
// pipeline's memory) is no idle window: the rate cut under overload
// stays. Those refusals were counted nowhere the controller looks, so the
// window read "nothing offered or in flight" and lifted the rate.
func TestMemoryRefusalsAreNoIdleWindow(t *testing.T) {
	m := NewMemory(100, false, "test")
	src, _ := memSource(m)
	other, _ := memSource(m)
	held := sourceRuntime{other}.NewEvent(make([]byte, 100), 1, stage.Origin{}) // the other source holds the limit
	defer held.Done(nil)
	a := &Admission{s: src, target: 100 * time.Millisecond, stop: make(chan struct{}), done: make(chan struct{})}
	a.c.target = a.target
	now := time.Now()
	a.c.started = now.Add(-10 * time.Second)
	a.c.rate = 500 // cut earlier, under overload
	a.setRate(500, sinceEpoch(now))
	a.winStart = now
	src.adm.Store(a)
	rt := sourceRuntime{src}
	refused := 0
	for i := range 1000 {
		refused += 10 - rt.Admit(now.Add(time.Duration(i)*time.Millisecond), 10)
	}
	a.tick(now.Add(1100 * time.Millisecond))
	if refused != 10000 || a.c.rate != 500 {
		t.Errorf("%d of 10000 records refused; rate %v after the window, want 500 kept (last decision %q)", refused, a.c.rate, a.lastD.Reason)
	}
}
