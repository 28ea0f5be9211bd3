package engine

// This file holds a stage's snapshot for /stats.

import "github.com/stagedserver/seda/stats"

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
		st.Queue = stats.Queue{Depth: ps.Depth, Capacity: ps.Capacity, Overflow: s.set.Overflow.String()}
		st.Pool = stats.Pool{Workers: s.workersNow(), Concurrency: ps.Concurrency,
			Running: ps.Running, Blocked: ps.Blocked, Waiting: ps.Waiting}
		st.Control = s.controlStats()
		st.Rejected = ps.Rejected + s.shed.Load()
		s.shardFigures(&st)
	case s.locks != nil:
		s.shardFigures(&st)
	case s.src != nil:
		// A source's In is the events it made: one atomic add per event
		// rather than two.
		st.In = s.h.Created()
		st.InFlight = s.InFlight()
		if a := s.adm.Load(); a != nil {
			st.Control = a.stats()
		}
	}
	if f, ok := s.src.(figurer); ok {
		f.Figures(&st)
	} else if f, ok := s.handler.(figurer); ok {
		f.Figures(&st)
	}
	q := s.lat.quantiles(0.5, 0.99)
	st.Latency = stats.Latency{P50: q[0], P99: q[1]}
	return st
}
