package stage

import (
	"errors"
	"sync/atomic"
	"time"
)

// Event is the item that flows between stages: one record with its payload,
// the fields a decoder filled in, and where it came from.
//
// An event is owned by one stage at a time: the source that made it, then
// each stage it is emitted to. Whoever finishes it calls Done exactly once.
//
// Decoded fields are read with Field (Go values) or Value (typed, without
// allocating) and written with Set, SetValue or SetText; Fields iterates
// over them. Once Done has run, the event's fields are recycled: nothing
// may read them after.
type Event struct {
	Payload []byte // the record as it arrived (without framing)
	Seq     uint64 // per-source sequence number (per connection for netio)
	Origin  Origin // who is told when the event is finished

	fs *fieldSet // the decoded fields; nil until the first Set

	// arrived is when the source read it (Arrived), as monotonic ns since
	// epoch; 0 when unset. Eight bytes rather than a time.Time's 24 keep
	// the event at 96 bytes, a size class smaller than 112: an event is
	// allocated per record, and fewer bytes allocated means fewer GC
	// cycles, which (with their write barriers) cost every hop.
	arrived int64
	src     *Stage // the source stage that made it (NewEvent); may be nil
	// owner is the stage holding the event now, or finished once Done was
	// called. One word serves both purposes so that Done is a single
	// atomic swap and an event stays small (it is allocated per record).
	owner    atomic.Pointer[Stage]
	enqueued int64 // monotonic ns when handed to the current stage; for latency
}

// Arrived returns when the source read the event (NewEvent, NewEventAt or
// SetArrived), or the zero time when nobody said. It carries a monotonic
// reading, so time.Since(ev.Arrived()) is immune to wall-clock steps.
func (ev *Event) Arrived() time.Time {
	if ev.arrived == 0 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(ev.arrived))
}

// SetArrived records when the source read the event; a zero t unsets it.
// NewEvent and NewEventAt call it; code that builds events itself may.
func (ev *Event) SetArrived(t time.Time) {
	if t.IsZero() {
		ev.arrived = 0
		return
	}
	d := int64(t.Sub(epoch))
	if d == 0 {
		d = 1 // 0 means unset; a nanosecond off is no matter
	}
	ev.arrived = d
}

// finished marks an event whose Done was called. It is never modified.
var finished = new(Stage)

// Origin names the stage and completion key to notify when an event is
// finished, as a Windows completion key names the connection a completion
// belongs to.
type Origin struct {
	To  Completer // nil: nobody waits for this event
	Key uint64    // completion key, e.g. the connection id
}

// Completer receives the completions of the events it originated. A network
// source implements it by posting a completion packet to its own port, so
// acknowledgements travel back the way IOCP write completions do.
//
// Complete is called once per event, from whichever goroutine finishes it;
// it must not block for long.
type Completer interface {
	Complete(ev *Event, err error)
}

// ErrBusy finishes an event that found its next queue full under overflow
// reject; netio sends it to the client as "nack N busy".
var ErrBusy = errors.New("busy")

// Done finishes the event: err nil means it is durable or deliberately
// dropped; otherwise it was refused and err says why (sent to the client as
// the nack reason). Done must be called exactly once per event; a second
// call is counted and logged by the source stage and otherwise ignored.
func (ev *Event) Done(err error) {
	st := ev.owner.Swap(finished)
	if st == finished {
		if ev.src != nil {
			ev.src.doubleDone(ev, err)
		}
		return
	}
	if st != nil {
		if err != nil {
			st.errors.Add(1)
		} else if st.set.Terminal {
			st.out.Add(1)
		}
	}
	if ev.src != nil {
		ev.src.completed.Add(1)
	}
	if ev.Origin.To != nil {
		ev.Origin.To.Complete(ev, err)
	}
	ev.releaseFields()
}

// Finished reports whether Done has been called.
func (ev *Event) Finished() bool { return ev.owner.Load() == finished }

// failIfOwned finishes ev with err if stage s still owns it: used when a
// handler fails or panics, for the events of its batch that it neither
// finished nor handed on.
func (ev *Event) failIfOwned(s *Stage, err error) {
	if ev.owner.Load() == s {
		ev.Done(err)
	}
}

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

var epoch = time.Now()
