package natsq

// This file tests the consumer under the pipeline's memory limit: it
// waits past it, and goes on while others hold it.

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// TestConsumerWaitsPastMemoryLimit: past the pipeline's memory limit the
// consumer takes no more messages, under overflow reject as under block
// (nobody is there to refuse to), so that what the consuming process holds
// stays within the limit and one envelope's events; once the stage moves
// again every event is stored and none was refused.
func TestConsumerWaitsPastMemoryLimit(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprintf("block=%v", block), func(t *testing.T) {
			const (
				n      = 200
				size   = 4 << 10 // bytes per payload, what each event is charged
				perEnv = 4       // events per envelope
				limit  = 64 << 10
			)
			gate := make(chan struct{})
			s := &sink{seen: map[string]int{}, fail: func(*stage.Event) error { <-gate; return nil }}
			mem := engine.NewMemory(limit, block, "test")
			c := NewClient(Config{Embedded: &EmbeddedConfig{StoreDir: t.TempDir()}}, "test", nil)
			// The stage's queue takes every event: only the memory limit
			// holds the consumer back.
			sp := newSplitClients(t, c, c, QueueConfig{Stream: "t_mem", EnvelopeEvents: perEnv},
				stage.Settings{Batch: 8, Capacity: 2 * n}, s, mem)
			var once sync.Once
			openGate := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(openGate) // before the split's cleanup, which waits for the sink

			a := newAcks(n)
			sp.sendSized(t, n, size, a)
			for seq, err := range a.wait(t) { // in the stream
				if err != nil {
					t.Fatalf("event %d: %v", seq, err)
				}
			}
			// The front's events release their bytes just after their
			// acks: wait for that, so that what is held below is the
			// consuming side's alone.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := sp.src.WaitFinished(ctx); err != nil {
				t.Fatal(err)
			}

			poll.Until(t, "the consumer waiting past the memory limit", mem.Waiting)
			if held, most := mem.Held(), int64(limit+perEnv*size); held > most {
				t.Errorf("the consuming side holds %d bytes past its limit, want at most %d (the limit and one envelope)", held, most)
			}
			openGate()
			waitCount(t, s, n)
			st := mem.Stats()
			if st.Refused != 0 || st.Waits == 0 {
				t.Errorf("memory: %d refused, %d waits; want none refused and some waits", st.Refused, st.Waits)
			}
		})
	}
}

// TestConsumerGoesOnWhileOthersHoldTheLimit: in one process, bytes held by
// the queue's front (here an event the test keeps) put the pipeline past
// its memory limit; the consumer still takes envelopes, one at a time
// (it waits only while its own events hold some of the bytes), so every
// event is stored: it never waits on what only the front can release.
func TestConsumerGoesOnWhileOthersHoldTheLimit(t *testing.T) {
	const (
		n     = 100
		size  = 4 << 10
		limit = 64 << 10
	)
	// The sink holds its first events until the consumer waits on
	// them, so that the test sees that wait every time.
	gate := make(chan struct{})
	s := &sink{seen: map[string]int{}, fail: func(*stage.Event) error { <-gate; return nil }}
	mem := engine.NewMemory(limit, false, "test")
	c := NewClient(Config{Embedded: &EmbeddedConfig{StoreDir: t.TempDir()}}, "test", nil)
	sp := newSplitClients(t, c, c, QueueConfig{Stream: "t_mem_front", EnvelopeEvents: 4},
		stage.Settings{Batch: 8, Capacity: 2 * n}, s, mem)
	var once sync.Once
	openGate := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(openGate) // before the split's cleanup, which waits for the sink
	kept := sp.src.NewEvent(make([]byte, 2*limit), 0, stage.Origin{To: newAcks(1)})
	defer kept.Done(nil)
	if held := mem.Held(); held < limit {
		t.Fatalf("held %d: the kept event should put the pipeline past its limit, %d", held, limit)
	}
	sp.sendSized(t, n, size, newAcks(n))
	poll.Until(t, "the consumer waiting on its own events", mem.Waiting)
	openGate()
	waitCount(t, s, n)
	if st := mem.Stats(); st.Waits == 0 || st.Refused != 0 {
		t.Errorf("memory: %d waits, %d refused; want the consumer to have waited on its own events, nothing refused", st.Waits, st.Refused)
	}
}

// sendSized hands the publisher n events of size bytes each (their
// number, then x's), told to a.
func (sp *split) sendSized(t *testing.T, n, size int, a *acks) {
	t.Helper()
	out := sp.src.NewEmitter()
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		payload := fmt.Appendf(nil, "%d:", i)
		payload = append(payload, bytes.Repeat([]byte{'x'}, size-len(payload))...)
		if err := out.Emit(ctx, sp.src.NewEvent(payload, uint64(i), stage.Origin{To: a})); err != nil {
			t.Fatal(err)
		}
	}
	out.Flush(ctx)
}
