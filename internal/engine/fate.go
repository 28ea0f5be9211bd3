package engine

// This file holds a source stage's count of what became of its events,
// by fate (stats.Fates), for the pipeline's shutdown report.

import (
	"context"
	"sync/atomic"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// fates is a source stage's count of its events finished with an error,
// by stage.Fate; those finished without one are the rest of the events
// completed.
type fates struct {
	of      func(error) stage.Fate // the source's Fate method; nil: every one is lost
	refused [stage.FateDeadLettered + 1]atomic.Uint64
	// door counts the records the source's door refused (the memory
	// limit, admission control, a full queue under reject), by the fate of
	// a busy refusal: no event was made of them, so they are not among the
	// events completed, and the report would not add up without them.
	door [stage.FateDeadLettered + 1]atomic.Uint64
}

// fateSource finds the optional Fate method on a source, or on the Input
// an inputSource runs.
func fateSource(src stage.Source) func(error) stage.Fate {
	type fater interface{ Fate(err error) stage.Fate }
	if in, ok := src.(*inputSource); ok {
		if f, ok := in.in.(fater); ok {
			return f.Fate
		}
		return nil
	}
	if f, ok := src.(fater); ok {
		return f.Fate
	}
	return nil
}

// fate returns the fate of a record of the source refused with err.
func (f *fates) fate(err error) stage.Fate {
	if f.of == nil {
		return stage.FateLost
	}
	if k := f.of(err); k <= stage.FateDeadLettered {
		return k
	}
	return stage.FateLost
}

// Failed counts n events of this source finished with err, by their fate
// (track.Source).
func (s *Stage) Failed(err error, n uint64) {
	s.fates.refused[s.fates.fate(err)].Add(n)
}

// refusedAtDoor counts n records the door refused, busy.
func (s *Stage) refusedAtDoor(n int) {
	s.fates.door[s.fates.fate(stage.ErrBusy)].Add(uint64(n))
}

// Fates returns what became of this source stage's events so far: those
// finished, by fate, the records its door refused (by the fate of a busy
// refusal), and, when unfinished is set, those not finished yet
// counted as a forced stop leaves them (the fate of a record refused with
// context.Canceled). A stage that is not a source counts none. An event
// finishing while Fates reads may count as finished a moment before its
// error is counted: a reading taken while events finish may count one
// refused event as stored.
func (s *Stage) Fates(unfinished bool) stats.Fates {
	if s.ended == nil {
		return stats.Fates{} // not a source
	}
	var f stats.Fates
	var refused uint64
	for k := range s.fates.refused {
		n := s.fates.refused[k].Load()
		refused += n
		addFate(&f, stage.Fate(k), n)
	}
	for k := range s.fates.door {
		addFate(&f, stage.Fate(k), s.fates.door[k].Load())
	}
	done := s.h.Completed()
	if done > refused {
		f.Stored = done - refused
	}
	if unfinished {
		addFate(&f, s.fates.fate(context.Canceled), s.h.InFlight())
	}
	return f
}

// addFate adds n events of fate k to f.
func addFate(f *stats.Fates, k stage.Fate, n uint64) {
	switch k {
	case stage.FateResend:
		f.Resend += n
	case stage.FateRedelivered:
		f.Redelivered += n
	case stage.FateDeadLettered:
		f.DeadLettered += n
	default:
		f.Lost += n
	}
}
