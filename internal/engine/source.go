package engine

// This file holds a source stage's runtime: the stage.SourceRuntime a
// source gets in Start.

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// sourceRuntime is the stage.SourceRuntime of a source stage: a narrow
// view of it.
type sourceRuntime struct{ s *Stage }

var _ stage.SourceRuntime = sourceRuntime{}

func (rt sourceRuntime) Name() string              { return rt.s.set.Name }
func (rt sourceRuntime) Settings() stage.Settings  { return rt.s.set }
func (rt sourceRuntime) Logger() *zap.Logger       { return rt.s.log }
func (rt sourceRuntime) NewEmitter() stage.Emitter { return rt.s.newSourceEmitter() }

func (rt sourceRuntime) NewEvent(payload []byte, seq uint64, origin stage.Origin) *stage.Event {
	return rt.s.NewEventAt(payload, seq, origin, time.Now())
}

// NewEventAt holds the making of an event itself, rather than calling
// Stage.NewEventAt: a source calls it through the interface, once per
// record.
func (rt sourceRuntime) NewEventAt(payload []byte, seq uint64, origin stage.Origin, arrived time.Time) *stage.Event {
	ev := events.Get().(*stage.Event)
	ev.Payload, ev.Seq, ev.Origin = payload, seq, origin
	at := sinceEpoch(arrived)
	st := state(ev)
	st.Init(&rt.s.h, at)
	st.Charge(len(payload))
	rt.s.calls.note(at, 0, rt.s.h.Created()) // a checkpoint per 100 ms, for the oldest event's age
	rt.s.h.Made()
	return ev
}

func (rt sourceRuntime) WaitFinished(ctx context.Context) error { return rt.s.WaitFinished(ctx) }
func (rt sourceRuntime) EndInput()                              { rt.s.endInput() }
func (rt sourceRuntime) StartAdmission(target time.Duration)    { rt.s.startAdmission(target) }
func (rt sourceRuntime) Admit(now time.Time, n int) int         { return rt.s.admitAt(now, n, false) }
func (rt sourceRuntime) AdmitAll(now time.Time, n int) bool     { return rt.s.admitAt(now, n, true) == n }
func (rt sourceRuntime) Hold(ev *stage.Event, n int)            { state(ev).Charge(n) }

// HoldReading counts n more bytes as held by the source, against the
// pipeline's memory limit, that are no event's yet: the start of a record
// that spans reads (netio.tcp), a request body being read (netio.http).
// The source releases them (ReleaseReading) once it has made the events
// of them, or given them up. The doors see them; a door's wait under
// overflow block does not wait on them (track.Memory.Wait says why).
func (rt sourceRuntime) HoldReading(n int) { rt.s.h.HoldReading(int64(n)) }

// ReleaseReading releases n bytes HoldReading counted.
func (rt sourceRuntime) ReleaseReading(n int) { rt.s.h.ReleaseReading(int64(n)) }

// OverMemoryLimit reports whether the pipeline holds its memory limit now:
// a source that counts why its door refused (netio.udp's drops) asks it,
// the door's other refusals being admission's and a full queue's.
func (rt sourceRuntime) OverMemoryLimit() bool {
	m := rt.s.door.m
	return m != nil && m.t.Over()
}

// WaitMemoryRoom holds the caller while the pipeline is over its memory
// limit and the source's own events hold some of it, whatever
// memory_limit's overflow, until the source stops taking input (counted
// as a wait, as the door's): a source with nobody to refuse to asks it
// before making the events of what it took. natsq's consumer does: what
// it has not taken stays in the stream, and nats.go stops pulling while
// it waits. It does not wait on bytes only other sources hold: in one
// process the queue's front may be waiting for room in the stream that
// only the consumer can make.
func (rt sourceRuntime) WaitMemoryRoom() { rt.s.waitOwnRoom() }

// newSourceEmitter returns an emitter for one goroutine of the source: it
// never waits for room while the source is under admission control,
// whenever that started.
func (s *Stage) newSourceEmitter() *Outputs { return &Outputs{from: s, root: s} }

// WaitFinished returns once every event the source made is finished and
// its Origin told, or fails when ctx ends first, saying how many are left.
func (s *Stage) WaitFinished(ctx context.Context) error {
	if err := s.h.WaitFinished(ctx); err != nil {
		return fmt.Errorf("stage %q: %d events unfinished: %w", s.set.Name, s.h.InFlight(), err)
	}
	return nil
}

func (s *Stage) endInput() {
	if s.ended != nil {
		s.endOnce.Do(func() { close(s.ended) })
	}
}
