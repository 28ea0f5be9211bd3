package stats

// This file holds the figures of the controllers that size a stage's
// knobs and admit a source's records.

import "time"

// Knob names, as in Decision.Knob and /stats.
const (
	KnobBatch       = "batch"
	KnobWorkers     = "workers"
	KnobConcurrency = "concurrency"
	KnobAdmission   = "admission"
)

// Control are a stage's adaptive knobs as /stats shows them (json
// "control"). Batch and Workers are set for a stage with a pool of its
// own, Admission for a source under admission control.
type Control struct {
	Batch     *Knob         `json:"batch,omitempty"`
	Workers   *Knob         `json:"workers,omitempty"`
	Admission *Admission    `json:"admission,omitempty"`
	Decisions uint64        `json:"decisions"`      // changes so far, by controllers and operators
	Last      *LastDecision `json:"last,omitempty"` // the latest change
}

// Knob is one knob: its value now, whether a controller sizes it (auto)
// or it is pinned (by the pipeline file or an operator), and the range
// the controller keeps it in.
type Knob struct {
	Now  int  `json:"now"`
	Auto bool `json:"auto"`
	Min  int  `json:"min"`
	Max  int  `json:"max"`
}

// Decision is one change of a knob: by a controller (with its reason) or
// by an operator (pipectl scale).
type Decision struct {
	Knob   string    `json:"knob"`
	From   float64   `json:"from"`
	To     float64   `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"-"`
}

// LastDecision is the latest Decision with its age.
type LastDecision struct {
	Decision
	AgeS float64 `json:"age_s"`
}

// Admission is a source's admission control as /stats shows it.
type Admission struct {
	TargetMs float64 `json:"target_ms"` // the p99 target, read to finish
	P99Ms    float64 `json:"p99_ms"`    // the p99 of the last window judged
	Rate     float64 `json:"rate"`      // records admitted per second at most; 0: not limiting
	Admitted uint64  `json:"admitted"`  // records let in
	Shed     uint64  `json:"shed"`      // records refused busy at the door
}
