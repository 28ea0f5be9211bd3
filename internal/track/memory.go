package track

// This file holds the count of the bytes of records a pipeline holds:
// charged to an event when its source makes it, released when it is
// finished, and held against a limit (Memory).

import (
	"math"
	"sync"
	"sync/atomic"
)

// Memory counts the bytes of the records a pipeline holds: those its
// sources' events were charged (State.Charge: a payload, a read buffer
// it keeps) and that are not finished yet, wherever they are (queued, in
// a batch, in a handler). It is counted per source, on the cache lines
// the source's counters use already: charged where events are made,
// released where they finish. A Memory only adds the sources up and
// wakes whoever waits for the count to fall under its limit.
type Memory struct {
	limit int64     // bytes; 0: none
	srcs  []*Holder // the sources counted; fixed before any event is made

	waiters atomic.Int32 // Wait and WaitOwn calls waiting: releases wake them
	mu      sync.Mutex   // guards room
	room    chan struct{}

	// held counts the calls holding their caller back now (Waiting), and
	// waits those that did, in all (Waits): a call that finds room at
	// once is in neither.
	held  atomic.Int32
	waits atomic.Uint64
}

// NewMemory returns a count held against limit bytes (0: no limit).
func NewMemory(limit int64) *Memory {
	return &Memory{limit: max(limit, 0), room: make(chan struct{})}
}

// Attach counts the events of the source h. It is called before h makes
// any, and never while the count is read.
func (m *Memory) Attach(h *Holder) {
	h.mem = m
	m.srcs = append(m.srcs, h)
}

// Limit returns the limit in bytes, 0 for none.
func (m *Memory) Limit() int64 { return m.limit }

// Held returns the bytes the events of the attached sources were charged
// and that are not released yet.
func (m *Memory) Held() int64 {
	var n int64
	for _, h := range m.srcs {
		n += h.Held()
	}
	return n
}

// Over reports whether the bytes held have reached the limit.
func (m *Memory) Over() bool { return m.limit > 0 && m.Held() >= m.limit }

// overEvents reports whether the bytes the events hold, not counting
// those of records still being read (Holder.HoldReading), have reached
// the limit: what Wait waits on. The bytes being read are released only
// by their sources' reading going on, and that may be what waits (a
// netio.tcp worker at its door, while the reads that would end the
// records held wait in its port): waiting on them could wait for ever.
func (m *Memory) overEvents() bool {
	if m.limit == 0 {
		return false
	}
	var n int64
	for _, h := range m.srcs {
		n += h.Held() - h.reading.Load()
	}
	return n >= m.limit
}

// Wait returns true once the bytes the events hold are under the limit
// (the bytes of records still being read are not waited on: see
// overEvents), or false when stop is closed first. It is woken by the
// releases, never polled.
func (m *Memory) Wait(stop <-chan struct{}) bool { return m.WaitOwn(nil, stop) }

// WaitOwn is Wait for the source h when what it takes in waits on others
// of the pipeline's sources (natsq's consumer, whose queue's front may run
// in the same process): it also returns true once h holds nothing, over
// the limit or not, so that h never waits on bytes only the others can
// release while they may be waiting on h. A nil h makes it Wait.
func (m *Memory) WaitOwn(h *Holder, stop <-chan struct{}) bool {
	m.waiters.Add(1)
	defer m.waiters.Add(-1)
	if h != nil {
		h.ownWaiters.Add(1)
		defer h.ownWaiters.Add(-1)
	}
	counted := false
	for {
		// The channel is read before the count, as in WaitFinished: a
		// release after the count closes this channel or a later one.
		m.mu.Lock()
		room := m.room
		m.mu.Unlock()
		if !m.overEvents() || h != nil && h.Held() == 0 {
			return true
		}
		if !counted {
			counted = true
			m.waits.Add(1)
			m.held.Add(1)
			defer m.held.Add(-1)
		}
		select {
		case <-room:
		case <-stop:
			return false
		}
	}
}

// Waiting reports whether a Wait or WaitOwn call is holding its caller
// back (for tests).
func (m *Memory) Waiting() bool { return m.held.Load() > 0 }

// Waits returns how many Wait and WaitOwn calls have held their caller
// back: those that found room at once are not counted.
func (m *Memory) Waits() uint64 { return m.waits.Load() }

// wake wakes the waiters when the bytes held are under the limit, or when
// h, whose events released bytes, holds none and waits in WaitOwn.
func (m *Memory) wake(h *Holder) {
	if m.overEvents() && (h.ownWaiters.Load() == 0 || h.Held() > 0) {
		return
	}
	m.mu.Lock()
	close(m.room)
	m.room = make(chan struct{})
	m.mu.Unlock()
}

// Held returns the bytes the events the source h made were charged and
// that are not released yet.
func (h *Holder) Held() int64 {
	// freed first: it never passes charged, so the difference read this
	// way is never negative.
	f := h.freed.Load()
	return h.charged.Load() - f
}

// Charged returns the bytes the events the source h made were charged in
// all.
func (h *Holder) Charged() int64 { return h.charged.Load() }

// release releases n bytes of the source h's events, and wakes the
// waiters of its Memory.
func (h *Holder) release(n int64) {
	h.freed.Add(n)
	if m := h.mem; m != nil && m.waiters.Load() > 0 {
		m.wake(h)
	}
}

// Charge adds n bytes to what the event is charged (and its source
// holds) until it is finished. Only the source that made the event
// calls it, before handing the event on. An event is charged 4 GiB at
// most.
func (s *State) Charge(n int) {
	if n <= 0 || s.src == nil {
		return
	}
	n = min(n, math.MaxUint32-int(s.bytes))
	s.bytes += uint32(n)
	s.src.charged.Add(int64(n))
}

// HoldReading charges the source h n bytes of records it is reading and
// has made no event of yet (the start of a record that spans reads, a
// request's body), until ReleaseReading. They count as held, and so
// against the limit at the doors, but Wait does not wait on them.
func (h *Holder) HoldReading(n int64) {
	if n <= 0 {
		return
	}
	h.reading.Add(n)
	h.charged.Add(n)
}

// ReleaseReading releases n bytes HoldReading charged to h.
func (h *Holder) ReleaseReading(n int64) {
	if n <= 0 {
		return
	}
	h.reading.Add(-n)
	h.release(n)
}

// Bytes returns what the event is charged.
func (s *State) Bytes() int { return int(s.bytes) }
