package engine

// This file holds the pipeline's memory limit as the runtime applies it:
// the count of the bytes of records held (track.Memory), the sources'
// doors past the limit, and its figures.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stats"
)

// Memory is a pipeline's memory limit: the bytes of the records its
// sources' events hold (payloads, and what else a source said an event
// keeps: NewEvent and Hold), wherever those events are (queued, in a
// batch, in a handler), until they are finished; and the bytes of
// records its sources are still reading, of which there is no event yet
// (HoldReading: netio.tcp's records that outgrow a read, netio.http's
// bodies), until the source makes their events or gives them up. Those
// count at the doors, but a door's wait under Block waits on the events'
// bytes alone: the others are released only by reading on, which may be
// what waits.
//
// What is counted is charged at the hand-offs that exist already: when a
// source makes an event, and when the event is finished (Done, DoneAll),
// on the source's own counters; nothing is counted per field or per
// queue hop. Past the limit a source's door (SourceRuntime.Admit, asked
// once per read) refuses what was read (the source nacks it busy, answers
// 503, drops a datagram and counts it), or, with Block, holds the read
// back until the pipeline holds less (the source stops reading: TCP
// pushes back on the client). A source under admission control refuses
// either way, since it never waits. An Input (the runtime reads it) stops
// reading either way: nobody is there to refuse to, and so does natsq's
// consumer (WaitMemoryRoom), which leaves what it has not taken in the
// stream, while its own events hold some of the bytes. Nothing already
// accepted is dropped.
type Memory struct {
	t       *track.Memory
	block   bool
	basis   string
	refused atomic.Uint64
}

// NewMemory returns a memory limit of limit bytes (0: none, the bytes are
// counted only). block says the doors hold reads back past it instead of
// refusing them; basis says where the limit comes from, for /stats.
func NewMemory(limit int64, block bool, basis string) *Memory {
	return &Memory{t: track.NewMemory(limit), block: block, basis: basis}
}

// Held returns the bytes held now.
func (m *Memory) Held() int64 { return m.t.Held() }

// Limit returns the limit in bytes (0: none).
func (m *Memory) Limit() int64 { return m.t.Limit() }

// Stats returns the figures /stats shows as "memory".
func (m *Memory) Stats() stats.Memory {
	o := "reject"
	if m.block {
		o = "block"
	}
	return stats.Memory{
		LimitBytes: m.t.Limit(), HeldBytes: m.t.Held(), Basis: m.basis, Overflow: o,
		Refused: m.refused.Load(), Waits: m.t.Waits(),
	}
}

// Waiting reports whether a door is holding a read back (for tests).
func (m *Memory) Waiting() bool { return m.t.Waiting() }

// door is a source stage's side of the memory limit: the count its events
// are charged to, and the end of its door's waits (the source stops
// taking input, or is closed).
type door struct {
	m    *Memory
	stop chan struct{}
	once sync.Once
}

// UseMemory makes the events of the stage count against m, if it is a
// source: call it before Start. A stage bounded in bytes itself does so
// through its queue (Settings.MaxBytes).
func (l Lifecycle) UseMemory(m *Memory) {
	s := l.s
	if s.ended == nil || m == nil || s.door.m != nil { // not a source, or counted already
		return
	}
	s.door.m = m
	s.door.stop = make(chan struct{})
	m.t.Attach(&s.h)
}

// close ends the door's waits for good: the source is stopping, and what
// it has read is to be emitted.
func (d *door) close() {
	if d.stop != nil {
		d.once.Do(func() { close(d.stop) })
	}
}

// admitMemory is the door's memory check for n records read: it returns
// false when they are refused (counted), after holding the read back
// while the pipeline is over its limit under Block.
func (s *Stage) admitMemory(n int) bool {
	m := s.door.m
	if m == nil || !m.t.Over() {
		return true
	}
	if !m.block || s.adm.Load() != nil {
		m.refused.Add(uint64(n))
		return false
	}
	m.t.Wait(s.door.stop)
	return true
}

// waitRoom holds the caller back while the pipeline is over its memory
// limit (or until the source stops): the Input adapter's door, before
// each Read.
func (s *Stage) waitRoom() {
	if m := s.door.m; m != nil && m.t.Over() {
		m.t.Wait(s.door.stop)
	}
}

// waitOwnRoom is waitRoom for a source that takes from a queue other
// sources of the pipeline may be waiting to put into (natsq's consumer,
// with its queue's front in the same process): past the limit it waits
// only while its own events hold some of the bytes, so that it never waits
// on what only the others can release (WaitMemoryRoom).
func (s *Stage) waitOwnRoom() {
	if m := s.door.m; m != nil && m.t.Over() && s.h.Held() > 0 {
		m.t.WaitOwn(&s.h, s.door.stop)
	}
}

// admitAt is the source's door: the memory limit first, then admission
// control; without it, a full queue that rejects (fullRejecting). With
// all it admits n or none (Admission.AdmitAll). What it refuses is counted
// for the shutdown report (refusedAtDoor), on the refusing paths only.
func (s *Stage) admitAt(now time.Time, n int, all bool) int {
	if !s.admitMemory(n) {
		if a := s.adm.Load(); a != nil {
			// Offered and refused: a window of these is no idle one.
			a.shedMemory.Add(uint64(n))
		}
		s.refusedAtDoor(n)
		return 0
	}
	if a := s.adm.Load(); a != nil {
		k := a.admit(now, n, all)
		if k < n {
			s.refusedAtDoor(n - k)
		}
		return k
	}
	if q := s.fullRejecting(); q != nil {
		q.shed.Add(uint64(n)) // the queue's Rejected in /stats, as if refused there
		s.refusedAtDoor(n)
		return 0
	}
	return n
}
