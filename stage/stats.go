package stage

import "github.com/stagedserver/seda/stats"

// Stats returns a snapshot of the stage. It is cheap enough to call every
// 100 ms while the stage is busy.
func (s *Stage) Stats() stats.Stage {
	st := stats.Stage{
		Name:       s.set.Name,
		Kind:       s.set.Kind,
		Inline:     s.set.Inline,
		In:         s.in.Load(),
		Out:        s.out.Load(),
		Errors:     s.errors.Load(),
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
	case s.src != nil:
		if g, ok := s.src.(Gauger); ok {
			st.Queue, st.Pool = g.Gauges()
		}
		st.In = s.created.Load()
		st.InFlight = s.InFlight()
		if sc, ok := s.src.(SourceStatser); ok {
			ss := sc.SourceStats()
			st.Source = &ss
		}
		if a := s.adm.Load(); a != nil {
			st.Control = a.stats()
		}
	}
	q := s.lat.quantiles(0.5, 0.99)
	st.Latency = stats.Latency{P50: q[0], P99: q[1]}
	return st
}
