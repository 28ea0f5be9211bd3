package stage

import (
	"errors"
	"sync"
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
// over them.
//
// Events are recycled: once the handler that finished an event (Done)
// has returned, the stage runtime may give the event, its fields and
// their memory to a new record. So nothing may keep or touch an event it
// has handed on or finished; a second Done within the handler's call is
// caught (counted and logged by the source stage), as before.
type Event struct {
	Payload []byte // the record as it arrived (without framing)
	Seq     uint64 // per-source sequence number (per connection for netio)
	Origin  Origin // who is told when the event is finished

	fs *fieldSet // the decoded fields; kept (emptied) when the event is recycled

	// arrived is when the source read it (Arrived), as monotonic ns since
	// epoch; 0 when unset.
	arrived int64
	src     *Stage // the source stage that made it (NewEvent); may be nil
	// owner is the stage holding the event now, or, once Done was called,
	// the done mark of the stage that held it then (finished when none
	// did). One word serves both purposes so that Done is a single atomic
	// compare-and-swap, and the stage that finished an event (and only
	// that one) knows to recycle it.
	owner    atomic.Pointer[Stage]
	enqueued int64 // monotonic ns when handed to the current stage; for latency
	// gen counts the event's lives: it changes when the event is
	// recycled, so the runtime tells a batch's event from a new record
	// that reuses it.
	gen atomic.Uint32
	// doneAt is when DoneAll finished the event (monotonic ns), for its
	// completer's latency figures; 0 when Done did (read the clock).
	doneAt int64
}

// events holds finished events for reuse (see Event).
var events = sync.Pool{New: func() any { return new(Event) }}

// recycle empties a finished event and gives it back for reuse. The stage
// runtime calls it once the handler that finished the event has returned.
func (ev *Event) recycle() {
	ev.gen.Store(ev.gen.Load() + 1) // only the recycling stage writes it
	ev.Payload = nil
	ev.Origin = Origin{}
	ev.resetFields()
	events.Put(ev)
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

// finished marks an event whose Done was called while no stage owned it.
// It is never modified.
var finished = newDoneMark(nil)

// newDoneMark returns the mark of events finished while s owned them (s
// nil: finished): a Stage that is never run, only compared.
func newDoneMark(s *Stage) *Stage {
	m := new(Stage)
	m.markOf = m
	if s != nil {
		m.markOf = s
	}
	return m
}

// isDoneMark reports whether s is a done mark: the owner of a finished
// event.
func (s *Stage) isDoneMark() bool { return s != nil && s.markOf != nil }

// finishedMark is what an event's owner becomes when Done is called while
// s owns it.
func (s *Stage) finishedMark() *Stage {
	if s == nil || s.doneMark == nil {
		return finished
	}
	return s.doneMark
}

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
	st, ok := ev.finish(err)
	if !ok {
		return
	}
	st.countFinished(err, 1)
	if ev.src != nil {
		ev.src.completed.Add(1)
	}
	ev.doneAt = 0 // the completer reads the clock itself
	if ev.Origin.To != nil {
		ev.Origin.To.Complete(ev, err)
	}
}

// finish marks the event finished, returning the stage that held it; ok
// is false (and the second Done counted) when it was finished already.
func (ev *Event) finish(err error) (st *Stage, ok bool) {
	for {
		st = ev.owner.Load()
		if st.isDoneMark() {
			if ev.src != nil {
				ev.src.doubleDone(ev, err)
			}
			return nil, false
		}
		if ev.owner.CompareAndSwap(st, st.finishedMark()) {
			return st, true
		}
	}
}

// countFinished counts n events the stage finished with err: as errors,
// or for a terminal stage, as out.
func (s *Stage) countFinished(err error, n uint64) {
	switch {
	case s == nil || n == 0:
	case err != nil:
		s.errors.Add(n)
	case s.set.Terminal:
		s.out.Add(n)
	}
}

// BatchCompleter is a Completer that takes the completions of several
// events at once: DoneAll hands it each run of consecutive events it
// originated, so that it takes its lock, say, once per run rather than
// once per event.
type BatchCompleter interface {
	Completer
	// CompleteAll is Complete for every event of evs, all finished with
	// err. evs is only valid during the call.
	CompleteAll(evs []*Event, err error)
}

// DoneAll finishes every event of evs with err, as Done does each: a sink
// that committed a batch finishes it so. The clock is read once for the
// batch (a source's latency figures use it), the counters are added once per run of events of one
// stage and source, and a BatchCompleter gets each run of its events in
// one call. An event already finished is counted as a second Done and
// skipped.
func DoneAll(evs []*Event, err error) {
	if len(evs) == 0 {
		return
	}
	now := nanotime()
	var st, src *Stage
	var nst, nsrc uint64
	run := 0 // evs[run:i] are finished now and share an Origin.To
	for i, ev := range evs {
		s, ok := ev.finish(err)
		if !ok || (i > run && ev.Origin.To != evs[run].Origin.To) {
			complete(evs[run:i], err)
			run = i
		}
		if !ok {
			run = i + 1
			continue
		}
		if s != st {
			st.countFinished(err, nst)
			st, nst = s, 0
		}
		nst++
		if ev.src != src {
			if src != nil {
				src.completed.Add(nsrc)
			}
			src, nsrc = ev.src, 0
		}
		nsrc++
		ev.doneAt = now
	}
	st.countFinished(err, nst)
	if src != nil {
		src.completed.Add(nsrc)
	}
	complete(evs[run:], err)
}

// complete tells the Origin.To of evs, which they share, that they are
// finished.
func complete(evs []*Event, err error) {
	if len(evs) == 0 {
		return
	}
	switch to := evs[0].Origin.To.(type) {
	case nil:
	case BatchCompleter:
		to.CompleteAll(evs, err)
	default:
		for _, ev := range evs {
			to.Complete(ev, err)
		}
	}
}

// finishedAt returns when the event was finished, as monotonic ns: the
// batch's one reading when DoneAll finished it, else now (Done).
func (ev *Event) finishedAt() int64 {
	if ev.doneAt != 0 {
		return ev.doneAt
	}
	return nanotime()
}

// Finished reports whether Done has been called.
func (ev *Event) Finished() bool { return ev.owner.Load().isDoneMark() }

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
