package stage

// Stats is a snapshot of one stage, shaped as /stats shows it.
type Stats struct {
	Name       string        `json:"name"`
	Kind       string        `json:"kind"`
	Inline     bool          `json:"inline,omitempty"`
	Queue      QueueStats    `json:"queue"`
	Pool       PoolStats     `json:"pool"`
	In         uint64        `json:"in"`  // events taken (sources: events made)
	Out        uint64        `json:"out"` // events handed on; a terminal stage: events it finished without error
	Errors     uint64        `json:"errors"`
	Rejected   uint64        `json:"rejected"`
	Panics     uint64        `json:"panics,omitempty"`
	DoubleDone uint64        `json:"double_done,omitempty"`
	InFlight   uint64        `json:"in_flight,omitempty"` // sources: events made and not yet finished
	Latency    LatencyStats  `json:"latency_ms"`
	Control    *ControlStats `json:"control,omitempty"` // the adaptive knobs (control_run.go)
	// Source holds a source's own counters, when it reports them
	// (SourceStatser, source_stats.go).
	Source *SourceStats `json:"source,omitempty"`
}

// QueueStats describes a stage's port.
type QueueStats struct {
	Depth    int    `json:"depth"`
	Capacity int    `json:"capacity"`
	Overflow string `json:"overflow"`
}

// PoolStats describes a stage's worker pool.
type PoolStats struct {
	Workers     int `json:"workers"`
	Concurrency int `json:"concurrency"`
	Running     int `json:"running"`
	Blocked     int `json:"blocked"`
	Waiting     int `json:"waiting"`
}

// LatencyStats are latency quantiles in milliseconds: for a handler stage,
// from entering its queue to the end of the handler call; for a source,
// from reading a record to its completion.
type LatencyStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Stats returns a snapshot of the stage. It is cheap enough to call every
// 100 ms while the stage is busy.
func (s *Stage) Stats() Stats {
	st := Stats{
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
		st.Queue = QueueStats{Depth: ps.Depth, Capacity: ps.Capacity, Overflow: s.set.Overflow.String()}
		st.Pool = PoolStats{Workers: s.workersNow(), Concurrency: ps.Concurrency,
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
	}
	q := s.lat.quantiles(0.5, 0.99)
	st.Latency = LatencyStats{P50: q[0], P99: q[1]}
	return st
}
