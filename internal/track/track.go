package track

// This file holds an event's bookkeeping: the Holder that counts a
// stage's events, an event's State, and a Batch's counting of finishes.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// cacheLine is the padding that keeps two counters off one cache line: 128
// bytes, since x86 cores fetch lines in adjacent pairs.
const cacheLine = 128

// Source is what a holder that makes events (a source stage) does when
// they finish: the engine implements it.
type Source interface {
	// Finished records that n events read at arrived (Nanotime) were
	// finished lat nanoseconds later: for the stage's latency figures
	// and its admission control.
	Finished(lat, arrived int64, n uint64)
	// DoubleDone reports an event of this source finished twice: the
	// event's Seq, Origin.Key and Origin.To (a stage.Completer, or nil;
	// the source names the record's sender from them if it logs the
	// event), and the error of the second Done.
	DoubleDone(seq, key uint64, to any, err error)
	// Failed records that n of its events were finished with err (err
	// is not nil), before they are counted as completed: for the fates
	// of the shutdown report. It is called on the error path only.
	Failed(err error, n uint64)
}

// Holder is a stage as a holder of events: the counters of the events it
// finished and, for a source, of those it made. The zero Holder is not
// ready: Init it. Its counters are safe for concurrent use.
type Holder struct {
	// The per-event counters of a source each get cache lines of their
	// own: created is written by the source's goroutines for every event
	// they make, completed by whichever worker finishes one. Side by side
	// (or next to the per-batch counters below) every event would move
	// the line between cores twice.
	created atomic.Uint64
	charged atomic.Int64 // bytes charged to the events made (memory.go), written with created
	// reading counts the bytes of charged that are no event's: records a
	// source is still reading (HoldReading), released by the source as
	// it makes their events or gives them up. Rarely written (only for
	// records that outgrow a read): it rides on charged's line.
	reading atomic.Int64
	_       [cacheLine]byte
	// completed and waiters share a line: a finisher reads waiters right
	// after writing completed.
	completed atomic.Uint64
	waiters   atomic.Int32 // WaitFinished calls waiting
	freed     atomic.Int64 // bytes released as the events finished (memory.go)
	// ownWaiters counts the Memory.WaitOwn calls waiting for this source
	// to hold nothing; read by its releases, beside freed.
	ownWaiters atomic.Int32
	_          [cacheLine]byte

	// Out and Errors count the events this stage handed on or finished:
	// Errors those finished with an error; Out, for a terminal stage, those
	// finished without one (the emitter adds those it hands on).
	Out, Errors atomic.Uint64

	terminal bool
	name     string  // the stage's name, which its refusals begin with (HolderName)
	src      Source  // nil for a stage that makes no events
	mark     *Holder // the owner of an event finished while this holds it
	markOf   *Holder // set on a mark alone: the holder it marks
	mem      *Memory // the pipeline's count of bytes held, told of releases; nil: none

	mu   sync.Mutex    // guards idle
	idle chan struct{} // closed (and replaced) when the last event made is finished while waiters wait
}

// finished is the mark of events finished while no stage held them
// (events made outside the runtime). It is never modified.
var finished = newMark(nil)

func newMark(h *Holder) *Holder {
	m := new(Holder)
	m.markOf = m
	if h != nil {
		m.markOf = h
	}
	return m
}

// Init readies h: terminal says its Out counts the events it finishes
// without error; src, when not nil, makes it a source, told when its
// events finish.
func (h *Holder) Init(terminal bool, src Source) {
	h.terminal, h.src = terminal, src
	h.mark = newMark(h)
	h.idle = make(chan struct{})
}

// SetName names the stage h is, for the refusals of the events it
// finishes (State.HolderName). It is called once, before any event can
// reach the stage, and never again: the name is read without a lock.
func (h *Holder) SetName(name string) { h.name = name }

// HolderName returns the name of the stage that holds the event, or ""
// when no named stage does (an event made outside the runtime, or one
// finished already).
func (s *State) HolderName() string {
	if h := s.Owner.Load(); h != nil && !h.IsMark() {
		return h.name
	}
	return ""
}

// Mark returns what the owner of an event finished while h held it
// becomes.
func (h *Holder) Mark() *Holder { return h.mark }

// IsMark reports whether h is a done mark: the owner of a finished event.
func (h *Holder) IsMark() bool { return h != nil && h.markOf != nil }

// Made counts an event made by the source h.
func (h *Holder) Made() { h.created.Add(1) }

// Created returns how many events the source h made.
func (h *Holder) Created() uint64 { return h.created.Load() }

// Completed returns how many events the source h made are finished.
func (h *Holder) Completed() uint64 { return h.completed.Load() }

// InFlight returns how many events the source h made that are not
// finished.
func (h *Holder) InFlight() uint64 { return h.created.Load() - h.completed.Load() }

// count counts n events h finished with err.
func (h *Holder) count(err error, n uint64) {
	switch {
	case h == nil || n == 0:
	case err != nil:
		h.Errors.Add(n)
	case h.terminal:
		h.Out.Add(n)
	}
}

// completedN counts n events of the source h finished, after their
// Origins were told, and wakes WaitFinished when they were the last.
func (h *Holder) completedN(n uint64) {
	if h == nil {
		return
	}
	// The wake is out of line: it is rare.
	h.completed.Add(n)
	if h.waiters.Load() > 0 {
		h.wake()
	}
}

// wake wakes WaitFinished when the events completed are all the source
// made.
func (h *Holder) wake() {
	if h.completed.Load() != h.created.Load() {
		return
	}
	h.mu.Lock()
	close(h.idle)
	h.idle = make(chan struct{})
	h.mu.Unlock()
}

// Waiting reports whether a WaitFinished call is waiting (for tests).
func (h *Holder) Waiting() bool { return h.waiters.Load() > 0 }

// WaitFinished returns once every event the source h made is finished and
// its Origin told, or with ctx.Err() when ctx ends first. It is signalled
// by the finisher of the last event, never polled.
func (h *Holder) WaitFinished(ctx context.Context) error {
	h.waiters.Add(1)
	defer h.waiters.Add(-1)
	for {
		// The channel is read before the count: a finish after the count
		// closes this channel or a later one, and a finish before it is in
		// the count.
		h.mu.Lock()
		idle := h.idle
		h.mu.Unlock()
		if h.InFlight() == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// State is an event's runtime bookkeeping: the first field of
// stage.Event. Its zero value is an event made outside the runtime:
// owned by nobody, made by no source.
type State struct {
	// Owner is the holder of the stage that holds the event now, or,
	// once it is finished, that holder's mark.
	Owner atomic.Pointer[Holder]
	src   *Holder // the source that made it; nil when none did
	// Gen counts the event's lives: it changes when the event is
	// recycled, so the runtime tells a batch's event from a new record
	// that reuses it.
	Gen atomic.Uint32
	// bytes is what the event is charged against the memory limit
	// (Charge): its payload and what else it keeps reachable. It sits in
	// Gen's padding.
	bytes uint32
	// Enqueued is when the event was handed to the stage that holds it
	// (Nanotime), for that stage's latency figures.
	Enqueued int64
	// arrived is when the source read it (Nanotime); 0 when unset.
	arrived int64
}

// Init starts the life of an event made by the source src at arrived
// (Nanotime): owned by src. The caller counts it as made (Holder.Made)
// before anyone can finish it, so that InFlight never goes below zero.
func (s *State) Init(src *Holder, arrived int64) {
	s.src, s.arrived = src, arrived // Enqueued is set whenever it is handed on
	s.bytes = 0
	s.Owner.Store(src)
}

// Arrived returns when the source read the event (Nanotime), 0 when
// unknown.
func (s *State) Arrived() int64 { return s.arrived }

// SetArrived sets when the source read the event (Nanotime); 0 unsets it.
func (s *State) SetArrived(ns int64) { s.arrived = ns }

// Finish marks the event finished with err and counts it for the stage
// that held it; when told (someone waits for the event: it has an
// Origin), it records the event's latency at its source. It reports
// false, and does nothing else, when the event was finished already: the
// caller reports the second Done (DoubleDone). After telling the event's
// Origin, the caller calls Completed.
//
// The latency of an event nobody waits for is not recorded: a clock
// reading per event is a measurable part of a hop (B2's events have no
// Origin).
func (s *State) Finish(err error, told bool) bool {
	for {
		h := s.Owner.Load()
		if h.IsMark() {
			return false
		}
		mark := finished
		if h != nil {
			mark = h.mark
		}
		if s.Owner.CompareAndSwap(h, mark) {
			h.count(err, 1)
			if src := s.src; src != nil {
				if err != nil && src.src != nil {
					src.src.Failed(err, 1)
				}
				if told && src.src != nil && s.arrived != 0 {
					src.src.Finished(Nanotime()-s.arrived, s.arrived, 1)
				}
				if s.bytes != 0 {
					src.release(int64(s.bytes))
				}
			}
			return true
		}
	}
}

// Completed counts the event as completed at its source, once its Origin
// has been told: what WaitFinished waits for.
func (s *State) Completed() { s.src.completedN(1) }

// DoubleDone reports a second Done of the event to its source, if it has
// one.
func (s *State) DoubleDone(seq, key uint64, to any, err error) {
	if s.src != nil && s.src.src != nil {
		s.src.src.DoubleDone(seq, key, to, err)
	}
}

// Batch finishes a run of events at once (stage.DoneAll): one clock
// reading for them all, each counter added once per run of events of one
// stage and one source, and one latency figure per run read together.
// The caller tells the events' Origins of each run before it calls Flush,
// since Flush counts them as completed.
type Batch struct {
	err  error
	now  int64
	st   *Holder // the stage of the events counted in nst
	nst  uint64
	src  *Holder // the source of the events counted in nsrc
	nsrc uint64
	arr  int64 // the arrival of the events counted in narr
	narr uint64
	// bytes adds up what the events counted in nsrc were charged.
	bytes int64
}

// Start begins a batch of events finished with err.
func (b *Batch) Start(err error) {
	*b = Batch{err: err, now: Nanotime()}
}

// Source returns the source of the events counted since the last Flush.
func (b *Batch) Source() *Holder { return b.src }

// Finish finishes one event, as State.Finish does; false when it was
// finished already. An event of another source than the events counted
// since the last Flush must be preceded by a Flush (see Source). The
// batch reads the clock once, so it records the latency of every event
// (told or not).
func (b *Batch) Finish(s *State) bool {
	for {
		h := s.Owner.Load()
		if h.IsMark() {
			return false
		}
		mark := finished
		if h != nil {
			mark = h.mark
		}
		if !s.Owner.CompareAndSwap(h, mark) {
			continue
		}
		if h != b.st {
			b.st.count(b.err, b.nst)
			b.st, b.nst = h, 0
		}
		b.nst++
		b.src = s.src
		b.nsrc++
		b.bytes += int64(s.bytes)
		if s.arrived != b.arr {
			b.observe()
			b.arr = s.arrived
		}
		b.narr++
		return true
	}
}

// observe records the latency of the events read together at b.arr.
func (b *Batch) observe() {
	if b.narr != 0 && b.arr != 0 && b.src != nil && b.src.src != nil {
		b.src.src.Finished(b.now-b.arr, b.arr, b.narr)
	}
	b.narr = 0
}

// Flush adds what the batch counted since the last Flush: call it once
// the Origins of those events have been told.
func (b *Batch) Flush() {
	b.st.count(b.err, b.nst)
	b.nst = 0
	b.observe()
	b.arr = 0
	if b.bytes != 0 && b.src != nil {
		b.src.release(b.bytes)
	}
	if b.err != nil && b.nsrc != 0 && b.src != nil && b.src.src != nil {
		b.src.src.Failed(b.err, b.nsrc)
	}
	b.src.completedN(b.nsrc)
	b.src, b.nsrc, b.bytes = nil, 0, 0
}

// SourceOf returns the source that made the event, or nil.
func (s *State) SourceOf() *Holder { return s.src }

// WorkerKey is the context key under which a stage worker's context
// carries its port worker, for stage.Blocking.
type WorkerKey struct{}

// HealthKey is the context key under which the context a handler gets
// carries its stage's health, for stage.ReportAttempt: a value with a
// method Attempt(error).
type HealthKey struct{}

// Nanotime is a monotonic clock in nanoseconds since the process began.
func Nanotime() int64 { return int64(time.Since(epoch)) }

// Epoch is when Nanotime began: Epoch.Add(ns) is the time of a reading.
func Epoch() time.Time { return epoch }

// epoch is set once, when the program starts, and never changed.
var epoch = time.Now()
