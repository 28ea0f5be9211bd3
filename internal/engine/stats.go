package engine

// This file holds a stage's snapshot for /stats.

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// figurer is a source, or a handler, that fills in figures of its own
// (see stage.Kind: Figures).
type figurer interface {
	Figures(st *stats.Stage)
}

// Stats returns a snapshot of the stage. It is cheap enough to call every
// 100 ms while the stage is busy.
func (s *Stage) Stats() stats.Stage {
	st := stats.Stage{
		Name:       s.set.Name,
		Kind:       s.set.Kind,
		Inline:     s.set.Inline,
		In:         s.in.Load(),
		Out:        s.h.Out.Load(),
		Errors:     s.h.Errors.Load(),
		Panics:     s.panics.Load(),
		DoubleDone: s.doubleDones.Load(),
	}
	switch {
	case s.port != nil:
		ps := s.port.Stats()
		st.Queue = stats.Queue{Depth: ps.Depth, Capacity: ps.Capacity, Overflow: s.set.Overflow.String(),
			Bytes: ps.Bytes, MaxBytes: ps.MaxBytes}
		// The port sees every worker that has joined it: those the pool
		// is sized to, and retired ones still finishing a batch (inside
		// a call to a database that does not answer, say), which count
		// until they leave, so that blocked never exceeds workers.
		live, target := ps.Running+ps.Blocked+ps.Waiting, s.workersNow()
		st.Pool = stats.Pool{Workers: max(live, target), Concurrency: ps.Concurrency,
			Running: ps.Running, Blocked: ps.Blocked, Waiting: ps.Waiting, Retiring: max(0, live-target)}
		st.Control = s.controlStats()
		st.Rejected = ps.Rejected + s.shed.Load()
		s.shardFigures(&st)
	case s.locks != nil:
		s.shardFigures(&st)
	case s.ended != nil: // a source (its Source may be nil in tests)
		// A source's In is the events it made: one atomic add per event
		// rather than two.
		st.In = s.h.Created()
		st.InFlight = s.InFlight()
		st.HeldBytes = s.h.Held()
		if a := s.adm.Load(); a != nil {
			st.Control = a.stats()
		}
	}
	q := s.lat.quantiles(0.5, 0.99)
	st.Latency = stats.Latency{P50: q[0], P99: q[1]}
	s.healthStats(&st)
	// Last, so that a kind that knows of trouble its calls do not show (a
	// queue's transport: no process consumes the stream) may make the
	// health it finds worse.
	s.figures(&st)
	return st
}

// figures has the kind fill in figures of its own. A panic in it is a bug
// in the kind: /stats shows the stage without them (Stats is called on
// the admin endpoint's goroutines, where a panic would end the process),
// and the first one is logged with its stack and counted, once, since
// /stats is read every second.
func (s *Stage) figures(st *stats.Stage) {
	f, ok := s.src.(figurer)
	if !ok {
		if f, ok = s.handler.(figurer); !ok {
			return
		}
	}
	defer func() {
		if v := recover(); v != nil && s.figuresPanicked.CompareAndSwap(false, true) {
			s.panics.Add(1)
			s.log.Error("Figures panicked", zap.String("stage", s.set.Name),
				zap.String("panic", stage.Redact(fmt.Sprint(v))), zap.StackSkip("stack", 2))
		}
	}()
	f.Figures(st)
}
