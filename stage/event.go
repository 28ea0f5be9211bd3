package stage

// This file holds the Event, how it is finished (Done, DoneAll) and who
// is told (Origin, Completer).

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/stagedserver/seda/internal/track"
)

// Event is the item that flows between stages: one record with its
// payload, the fields a decoder filled in, and where it came from.
//
// An event is owned by one stage at a time: the source that made it, then
// each stage it is emitted to. Whoever finishes it calls Done exactly
// once. Its Payload is the record as the source read it; the source
// handed it over (SourceRuntime.NewEvent does not copy it), so it is the
// event's to keep until Done.
//
// Decoded fields are read with Field (Go values) or Value (typed, without
// allocating) and written with Set, SetValue or SetText; Fields iterates
// over them.
//
// Events are recycled: once the handler that finished an event (Done)
// has returned, the runtime may give the event, its fields and their
// memory to a new record. So nothing may keep or touch an event it has
// handed on or finished; a second Done within the handler's call is
// caught (counted and logged by the source stage), as before.
type Event struct {
	// t is the runtime's bookkeeping (who holds the event, which source
	// made it and when, its generation). It must stay the first field:
	// internal/engine reaches it by converting the *Event (see package
	// internal/track; TestEventStateFirst).
	t track.State

	Payload []byte // the record as it arrived (without framing)
	Seq     uint64 // per-source sequence number (per connection for netio)
	Origin  Origin // who is told when the event is finished

	fs *fieldSet // the decoded fields; kept (emptied) when the event is recycled
}

// Arrived returns when the source read the event (the runtime sets it
// when the source makes the event), or the zero time when nobody said. It
// carries a monotonic reading, so time.Since(ev.Arrived()) is immune to
// wall-clock steps.
func (ev *Event) Arrived() time.Time {
	ns := ev.t.Arrived()
	if ns == 0 {
		return time.Time{}
	}
	return track.Epoch().Add(time.Duration(ns))
}

// SetArrived records when the source read the event; a zero t unsets it.
// The runtime sets it when a source makes an event; code that builds
// events itself (a test) may.
func (ev *Event) SetArrived(t time.Time) {
	if t.IsZero() {
		ev.t.SetArrived(0)
		return
	}
	d := int64(t.Sub(track.Epoch()))
	if d == 0 {
		d = 1 // 0 means unset; a nanosecond off is no matter
	}
	ev.t.SetArrived(d)
}

// Origin names whom to tell when an event is finished, and with which
// completion key, as a Windows completion key names the connection a
// completion belongs to.
type Origin struct {
	To  Completer // nil: nobody waits for this event
	Key uint64    // completion key, e.g. the connection id
}

// Sender names who sent the event's record, for a log line about the
// event (a second Done): what To's Sender method says of Key (see
// Completer), or "" when To has none.
func (o Origin) Sender() string {
	if s, ok := o.To.(interface{ Sender(key uint64) string }); ok {
		return s.Sender(o.Key)
	}
	return ""
}

// Completer is told how the events it originated ended. A network source
// implements it by recording the verdict in the connection's window and
// waking the connection's owner, which writes the acknowledgements.
//
// Complete is called once per event, from whichever goroutine finishes
// it; it must not block for long, and ev is valid only during the call.
//
// A Completer may also have a method
//
//	CompleteAll(evs []*Event, err error)
//
// that takes the completions of several events at once: DoneAll hands it
// each run of consecutive events it originated (all finished with err;
// evs valid during the call only), so that it takes its lock, say, once
// per run rather than once per event. And one with a method
//
//	Sender(key uint64) string
//
// names who sent the record of the event whose Origin.Key is key (a
// client's address), for the runtime's log line about a misused event
// (Origin.Sender): a source whose Key alone says nothing to a reader,
// as netio.udp's (a place in a buffer), has it. It may be called after
// the event was finished, from any goroutine.
type Completer interface {
	Complete(ev *Event, err error)
}

// batchCompleter is a Completer with CompleteAll (see Completer).
type batchCompleter interface {
	Completer
	CompleteAll(evs []*Event, err error)
}

// ErrBusy finishes an event that found its next queue full under overflow
// reject (or was refused by admission control); netio sends it to the
// client as "nack N busy".
var ErrBusy = errors.New("busy")

// Done finishes the event: err nil means it is durable or deliberately
// dropped; otherwise it was refused and err says why (sent to the client
// as the nack reason). A refusal is told as the stage that holds the
// event refuses it, `stage "NAME": err` (see refusal), so that a client
// of a pipeline with several parsers or routes learns which one refused.
// Done tells the event's Origin, and for an event with one the runtime
// records its latency from read to finish at its source (DoneAll does for
// every event). Done must be called exactly once per event; a second call
// is counted and logged by the source stage and otherwise ignored.
func (ev *Event) Done(err error) {
	if err != nil {
		err = ev.refusal(err)
	}
	if !ev.t.Finish(err, ev.Origin.To != nil) {
		ev.t.DoubleDone(ev.Seq, ev.Origin.Key, ev.Origin.To, err)
		return
	}
	if ev.Origin.To != nil {
		ev.Origin.To.Complete(ev, err)
	}
	ev.t.Completed()
}

// DoneAll finishes every event of evs with err, as Done does each: a sink
// that committed a batch finishes it so. The clock is read once for the
// batch, the counters are added once per run of events of one stage and
// source, and a Completer with CompleteAll gets each run of its events in
// one call. An event already finished is counted as a second Done and
// skipped. A refusal names the stage that holds each event, as Done's
// does.
func DoneAll(evs []*Event, err error) {
	if err == nil {
		doneAll(evs, nil)
		return
	}
	// A refusal names the stage that holds the events: each run of
	// events one stage holds is finished with its own error. The success
	// path above neither reads the names nor allocates.
	for len(evs) > 0 {
		name, n := evs[0].t.HolderName(), 1
		for n < len(evs) && evs[n].t.HolderName() == name {
			n++
		}
		doneAll(evs[:n], evs[0].refusal(err))
		evs = evs[n:]
	}
}

// refusal returns err, with which ev is refused, as the stage that holds
// ev refuses it: `stage "NAME": err`, wrapped, so that errors.Is and
// errors.As (and so its class) still see err. With several parsers or
// routes, a nack must say which one refused. An error that names its
// stage already (a sink's, or a handler's failed batch or panic, which
// the runtime names) is left as it is, and so is ErrBusy: "busy" is the
// word clients retry on, and the runtime's, not a stage's. So is an
// event no named stage holds (one made outside the runtime, as a
// handler's test makes them).
func (ev *Event) refusal(err error) error {
	name := ev.t.HolderName()
	if name == "" || errors.Is(err, ErrBusy) || strings.HasPrefix(err.Error(), `stage "`) {
		return err
	}
	return fmt.Errorf("stage %q: %w", name, err)
}

// doneAll finishes evs with err, which it does not change.
func doneAll(evs []*Event, err error) {
	if len(evs) == 0 {
		return
	}
	var b track.Batch
	b.Start(err)
	run := 0 // evs[run:i] are finished, of one source, and share an Origin.To
	for i, ev := range evs {
		if i > run && (!sameCompleter(ev.Origin.To, evs[run].Origin.To) || ev.t.SourceOf() != b.Source()) {
			complete(evs[run:i], err)
			b.Flush()
			run = i
		}
		if !b.Finish(&ev.t) {
			complete(evs[run:i], err)
			b.Flush()
			ev.t.DoubleDone(ev.Seq, ev.Origin.Key, ev.Origin.To, err)
			run = i + 1
		}
	}
	complete(evs[run:], err)
	b.Flush()
}

// sameCompleter reports whether a and b are one Completer. Comparing
// them with == panics when both hold one type that cannot be compared,
// such as a func (the ack an Input returns with each record, the
// runtime's Completer for it) or a struct holding one, however deep. So
// only pointers (every Completer of this module is one) and nil are
// compared; other Completers count as different, which only ends a run
// of DoneAll early.
func sameCompleter(a, b Completer) bool {
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || ta != nil && ta.Kind() != reflect.Pointer {
		return false
	}
	return a == b
}

// complete tells the Origin.To of evs, which they share, that they are
// finished.
func complete(evs []*Event, err error) {
	if len(evs) == 0 {
		return
	}
	switch to := evs[0].Origin.To.(type) {
	case nil:
	case batchCompleter:
		to.CompleteAll(evs, err)
	default:
		for _, ev := range evs {
			to.Complete(ev, err)
		}
	}
}

// Finished reports whether Done has been called.
func (ev *Event) Finished() bool { return ev.t.Owner.Load().IsMark() }
