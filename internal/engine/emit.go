package engine

// This file holds the emitter (Outputs): how events are handed from a
// stage to the next, a batch at a time.

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Outputs is the stage.Emitter a worker uses. It collects emitted events per
// next stage and hands them over in Flush: to a port-based stage as one
// batch of posts (and early, once a stage's batch size is reached), to an
// inline stage as one call of its handler. So a queue hop costs one lock
// and one clock reading per batch rather than per event. Not safe for
// concurrent use: each worker has its own.
type Outputs struct {
	from    *Stage
	out     uint64 // events handed on since the last Flush
	targets []target
	last    *target      // the target of the previous emit: usually the next one's too
	waits   []waitRun    // scratch for run's latency figures
	keys    shardScratch // scratch for an inline stage's shard_by keys
	gens    []uint32     // scratch for run: the gen of each event of its batch
	// root is the source whose emitter this is, or whose emitter made
	// this one (for an inline stage it runs): under its admission control
	// a full queue refuses events busy instead of making the emitter
	// wait. nil for a worker's emitter.
	root *Stage
	// hctx is hctxOf carrying the stage's health, for its handler's
	// calls (healthCtx).
	hctx, hctxOf context.Context
}

// target is one next stage and the events emitted to it since the last
// Flush.
type target struct {
	st *Stage
	// pkts holds the events for a port-based stage, already as the packets
	// PostBatch takes, so that an event is copied once on its way to the
	// port rather than into a list and then into packets.
	pkts []port.Packet[*stage.Event]
	evs  []*stage.Event // the events for an inline stage
	out  *Outputs       // for an inline stage: the emitter its handler uses
}

var _ stage.Emitter = (*Outputs)(nil)

// Emit hands ev to the stage's next stage.
func (o *Outputs) Emit(ctx context.Context, ev *stage.Event) error {
	return o.emit(ctx, o.from.next, ev)
}

// EmitTo hands ev to the named route.
func (o *Outputs) EmitTo(ctx context.Context, next string, ev *stage.Event) error {
	st, ok := o.from.routes[next]
	if !ok {
		err := fmt.Errorf("stage %q: no route to %q", o.from.set.Name, next)
		ev.Done(err)
		return err
	}
	return o.emit(ctx, st, ev)
}

func (o *Outputs) emit(ctx context.Context, st *Stage, ev *stage.Event) error {
	if st == nil {
		o.out++
		ev.Done(nil) // the end of the pipeline
		return nil
	}
	// The emitting stage hands the event over only if it still holds it:
	// one compare-and-swap, which costs what a Store's swap did. It fails
	// for an event made outside the runtime (owned by nobody), which
	// handOff then takes, and for a handler's bug, which it refuses.
	if !state(ev).Owner.CompareAndSwap(&o.from.h, &st.h) && !o.handOff(ev, st) {
		return nil
	}
	o.out++
	t := o.last
	if t == nil || t.st != st {
		t = o.target(st)
		o.last = t
	}
	if st.port == nil {
		t.evs = append(t.evs, ev)
		return nil
	}
	// Fill the next slot field by field: Err of every slot stays nil,
	// and writing Key, N and Value costs one write barrier instead of a
	// whole packet's. N is the record's bytes, which the port adds up
	// (queue.max_bytes, /stats).
	n := len(t.pkts)
	if n < cap(t.pkts) {
		t.pkts = t.pkts[:n+1]
	} else {
		t.pkts = append(t.pkts, port.Packet[*stage.Event]{})
	}
	pk := &t.pkts[n]
	pk.Key = ev.Origin.Key
	pk.N = len(ev.Payload)
	pk.Value = ev
	if n+1 >= int(st.batchNow.Load()) {
		o.post(ctx, t)
	}
	return nil
}

// handOff is emit's slow path, for an event the emitting stage does not
// hold: it hands over an event made outside the runtime (owned by
// nobody), and refuses, counting it, an event this stage finished (a
// second Done) or handed on already (a second Emit). The next stage
// owns that one now, or has finished it and its memory holds another
// record: sent on again, the sink would write that record twice, or an
// emptied event. It reports whether ev was handed over.
func (o *Outputs) handOff(ev *stage.Event, st *Stage) bool {
	es := state(ev)
	prev := es.Owner.Load()
	switch {
	case prev == nil && es.Owner.CompareAndSwap(nil, &st.h):
		return true
	case prev == o.from.h.Mark():
		// Finished by this stage's handler, which has not returned: the
		// event is not recycled yet, and its fields can be read.
		es.DoubleDone(ev.Seq, ev.Origin.Key, ev.Origin.To, nil)
	default:
		// Another stage's: ev's fields are not this stage's to read.
		o.from.doubleEmit()
	}
	return false
}

func (o *Outputs) target(st *Stage) *target {
	for i := range o.targets {
		if o.targets[i].st == st {
			return &o.targets[i]
		}
	}
	t := target{st: st}
	if st.port == nil {
		t.out = st.NewEmitter()
		t.out.root = o.root
	}
	o.targets = append(o.targets, t)
	o.last = nil // append may have moved the targets
	return &o.targets[len(o.targets)-1]
}

// post hands t's events to its port. Events that cannot be posted (the
// queue is full under overflow reject, or closed) are finished with the
// reason, owned again by the emitting stage so that its error count shows
// them.
func (o *Outputs) post(ctx context.Context, t *target) {
	now := track.Nanotime()
	for _, pk := range t.pkts {
		state(pk.Value).Enqueued = now
	}
	var n int
	var err error
	if o.root != nil && o.root.adm.Load() != nil {
		n, err = t.st.port.TryPostBatch(t.pkts)
	} else {
		n, err = t.st.port.PostBatch(ctx, t.pkts)
	}
	if err != nil {
		switch {
		case errors.Is(err, port.ErrFull):
			err = stage.ErrBusy
		case errors.Is(err, port.ErrClosed):
			err = fmt.Errorf("stage %q: %w", t.st.set.Name, errShuttingDown)
		default:
			err = fmt.Errorf("stage %q: %w", t.st.set.Name, err)
		}
		for _, pk := range t.pkts[n:] {
			o.out--
			state(pk.Value).Owner.Store(&o.from.h)
			pk.Value.Done(err)
		}
	}
	clear(t.pkts) // an idle emitter keeps no event reachable
	t.pkts = t.pkts[:0]
}

// errShuttingDown finishes an event posted to a queue the stop has closed.
// It is of the busy class: the stop abandons the event, which is for the
// client to send again, and a source says so ("nack N busy", 503).
var errShuttingDown = stage.WithClass(errors.New("shutting down"), stage.ErrBusy)

// shedding returns the stage's next stage when events should be refused
// before this (inline) stage runs: the next stage is its only way on, its
// queue rejects on overflow, and the queue is full. Otherwise nil.
func (s *Stage) shedding() *Stage {
	if n := s.next; n != nil && len(s.routes) <= 1 && n.rejectsFull() {
		return n
	}
	return nil
}

// rejectsFull reports whether the stage has a queue that rejects on
// overflow and is full now.
func (s *Stage) rejectsFull() bool {
	return s.port != nil && s.set.Overflow == port.Reject && s.port.Full()
}

// fullRejecting returns the first queue on the source's way on, past any
// inline stages, when that queue rejects on overflow and is full: the
// records read now would be refused busy there, after an event was made of
// each and the inline stages had run on it (B4: a JSON decode each, while
// the client offers ten times what the store takes). The door refuses them
// at once instead, so the source answers them with one range nack. Nil
// when the way on splits (routes), or its first queue blocks on overflow
// or has room.
func (s *Stage) fullRejecting() *Stage {
	if len(s.routes) > 1 {
		return nil
	}
	for st := s.next; st != nil; st = st.next {
		if st.port != nil {
			if st.rejectsFull() {
				return st
			}
			return nil
		}
		if len(st.routes) > 1 {
			return nil
		}
	}
	return nil
}

// Flush hands over every event emitted since the last Flush: posts them to
// port-based stages and runs inline stages' handlers on theirs. It
// publishes the emitter's counters.
func (o *Outputs) Flush(ctx context.Context) {
	for i := range o.targets {
		t := &o.targets[i]
		if len(t.pkts) != 0 {
			o.post(ctx, t)
		}
		if len(t.evs) == 0 {
			continue
		}
		if next := t.st.shedding(); next != nil {
			// The inline stage's only next stage refuses events when
			// full, and it is full: refuse the batch now rather than run
			// the handler (a JSON decode, say) on events the queue would
			// turn away. Under overload this keeps the CPU for the events
			// that can be taken. The events were handed to the inline
			// stage (this emitter counted them out) and are refused on
			// its behalf, as its errors: they count in its in too, so
			// that its in is its out plus its errors. The next stage
			// counts them in its rejected.
			t.st.in.Add(uint64(len(t.evs)))
			next.shed.Add(uint64(len(t.evs)))
			for _, ev := range t.evs {
				ev.Done(stage.ErrBusy)
			}
		} else {
			now := track.Nanotime()
			for _, ev := range t.evs {
				state(ev).Enqueued = now
			}
			t.st.runInline(ctx, t.evs, t.out)
		}
		clear(t.evs)
		t.evs = t.evs[:0]
	}
	if o.out != 0 {
		o.from.h.Out.Add(o.out)
		o.out = 0
	}
}
