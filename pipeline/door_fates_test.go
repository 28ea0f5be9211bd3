package pipeline

// This file tests that the stop's report counts the records a source's
// door refuses while the pipeline stops, by their fate.

import (
	"context"
	"testing"
	"time"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// doorSource emits the events a test asks for, and when its input is
// stopped reads a last few records that it offers to the door
// (SourceRuntime.Admit), emitting what the door admits. It has no Fate
// method: what it does not store is lost, as netio.tcp's under ack: none.
type doorSource struct {
	rt      stage.SourceRuntime
	last    int      // records read as the input stops
	refused chan int // how many of them the door refused
	size    int      // payload bytes of each event (0: one)
}

func (s *doorSource) Start(_ context.Context, rt stage.SourceRuntime) error {
	s.rt = rt
	return nil
}

// emit makes and hands on n events numbered from seq, and returns once
// they are posted.
func (s *doorSource) emit(n int, seq uint64) {
	em := s.rt.NewEmitter()
	for i := range n {
		_ = em.Emit(context.Background(), s.rt.NewEvent(make([]byte, max(s.size, 1)), seq+uint64(i), stage.Origin{}))
	}
	em.Flush(context.Background())
}

func (s *doorSource) StopInput(context.Context) error {
	admitted := s.rt.Admit(time.Now(), s.last)
	s.emit(admitted, 100)
	s.refused <- s.last - admitted
	return nil
}

func (s *doorSource) Drain(ctx context.Context) error { return s.rt.WaitFinished(ctx) }
func (s *doorSource) Close() error                    { return nil }

// doorPipeline starts in (test.door, src) -> hold -> out (test.finish)
// under mem, hold's queue having the settings given; hold says on held
// that a batch is in its handler, which waits for hub.gate to close.
func doorPipeline(t *testing.T, ctx context.Context, src *doorSource, hold stage.Settings, mem MemoryConfig) (p *Pipeline, hub *rtHub, held chan struct{}) {
	t.Helper()
	reg, hub := rtRegistry(t)
	held = make(chan struct{}, 1)
	if err := reg.Register(stage.Kind{Name: "test.door", Doc: "a source whose last read meets the door",
		NewSource: func(stage.Config, stage.Env) (stage.Source, error) { return src, nil }}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(stage.Kind{Name: "test.hold", Doc: "says it holds a batch, then waits for the gate",
		NewHandler: func(_ stage.Config, env stage.Env) (stage.Handler, error) {
			return &rtHandler{hub: hub, name: env.Stage, handle: func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
				held <- struct{}{}
				select {
				case <-hub.gate:
				case <-ctx.Done():
					return ctx.Err()
				}
				return rtPass(ctx, b, out)
			}}, nil
		}}); err != nil {
		t.Fatal(err)
	}
	cfg := rtConfig(
		rtStage("in", "test.door", "hold", stage.Settings{}, nil),
		rtStage("hold", "test.hold", "out", hold, nil),
		rtStage("out", "test.finish", "", stage.Settings{}, nil),
	)
	cfg.Memory = mem
	p = rtNew(t, cfg, reg)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return p, hub, held
}

// stopPastTheDoor stops p, lets hold go on once src's door has met the
// last read, and returns the report and how many records the door refused.
func stopPastTheDoor(t *testing.T, ctx context.Context, p *Pipeline, hub *rtHub, src *doorSource) (StopReport, int) {
	t.Helper()
	type stop struct {
		rep StopReport
		err error
	}
	stopped := make(chan stop, 1)
	go func() {
		rep, err := p.Stop(ctx)
		stopped <- stop{rep, err}
	}()
	n := <-src.refused
	close(hub.gate)
	st := <-stopped
	if st.err != nil || st.rep.Forced || st.rep.Abandoned != 0 {
		t.Fatalf("Stop: %+v, %v; want a complete drain", st.rep, st.err)
	}
	return st.rep, n
}

// TestStopReportCountsDoorRefusals: the first queue after the source
// rejects on overflow and is full while the source stops taking input,
// so its door refuses the three records it reads then, before making
// events of them. The report counts them lost (the source tells nobody,
// as under ack: none) besides the two events stored: before, it said
// "2 stored, 0 lost", and three records read were in no count.
func TestStopReportCountsDoorRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := &doorSource{last: 3, refused: make(chan int, 1)}
	one := stage.Settings{Workers: 1, Concurrency: 1, Batch: 1, Capacity: 1, Overflow: port.Reject}
	p, hub, held := doorPipeline(t, ctx, src, one, MemoryConfig{})
	// Event 1 in hold's handler, event 2 in its queue of one: full.
	src.emit(1, 1)
	<-held
	src.emit(1, 2)

	rep, n := stopPastTheDoor(t, ctx, p, hub, src)
	if n != 3 {
		t.Fatalf("the door refused %d of the 3 records read as the input stopped, want 3 (hold's queue full, under reject)", n)
	}
	if rep.Fates.Stored != 2 || rep.Fates.Lost != 3 || rep.Fates.Resend != 0 || rep.Fates.Redelivered != 0 {
		t.Errorf("drain: %s; want 2 stored and the 3 records the door refused lost", rep.Fates)
	}
}

// TestStopReportCountsMemoryLimitRefusals: the pipeline holds its
// memory_limit (overflow reject) in one event waiting in hold's handler
// while the source stops taking input, so its door refuses the three
// records it reads then, on the memory limit's path. The report counts
// them lost besides the event stored.
func TestStopReportCountsMemoryLimitRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const limit = 1 << 20
	src := &doorSource{last: 3, refused: make(chan int, 1), size: limit}
	p, hub, held := doorPipeline(t, ctx, src, stage.Settings{}, MemoryConfig{Limit: limit})
	src.emit(1, 1) // the limit's worth, held in hold's handler
	<-held

	rep, n := stopPastTheDoor(t, ctx, p, hub, src)
	if n != 3 {
		t.Fatalf("the door refused %d of the 3 records read as the input stopped, want 3 (the memory limit held, under reject)", n)
	}
	if rep.Fates.Stored != 1 || rep.Fates.Lost != 3 || rep.Fates.Resend != 0 || rep.Fates.Redelivered != 0 {
		t.Errorf("drain: %s; want 1 stored and the 3 records the memory limit refused lost", rep.Fates)
	}
}
