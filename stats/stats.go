package stats

// This file holds the figures of one stage as /stats shows them.

import (
	"encoding/json"
	"fmt"
	"math"
)

// Stage is a snapshot of one stage, shaped as /stats shows it.
type Stage struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Inline     bool     `json:"inline,omitempty"`
	Queue      Queue    `json:"queue"`
	Pool       Pool     `json:"pool"`
	In         uint64   `json:"in"`  // events taken (sources: events made)
	Out        uint64   `json:"out"` // events handed on; a terminal stage: events it finished without error
	Errors     uint64   `json:"errors"`
	Rejected   uint64   `json:"rejected"`
	Panics     uint64   `json:"panics,omitempty"`
	DoubleDone uint64   `json:"double_done,omitempty"`
	InFlight   uint64   `json:"in_flight,omitempty"` // sources: events made and not yet finished
	HeldBytes  int64    `json:"held_bytes,omitempty"`
	Latency    Latency  `json:"latency_ms"`
	Health     Health   `json:"health"`
	Control    *Control `json:"control,omitempty"` // the adaptive knobs
	// Shards describes the per-key mailboxes of a stage with shard_by.
	Shards *Shards `json:"shards,omitempty"`
	// Source holds a source's own counters, when it keeps them.
	Source *Source `json:"source,omitempty"`
	// Remote marks a stage that runs in other processes: this one only
	// hands events to its queue (queue.transport nats). Its in counts the
	// events handed to the queue, its out those the queue has taken for
	// good.
	Remote bool `json:"remote,omitempty"`
	// Transport holds the figures of the queue transport that carries
	// the stage's queue (Queue.Transport names it), as the transport's
	// package shapes them (natsq.Stats). JSON shows them under the
	// transport's name: "nats". Decoded from JSON, it is the
	// json.RawMessage found under that name; the transport's package
	// reads it back (natsq.StatsOf).
	Transport any `json:"-"`
	// Series are the transport's figures as /metrics shows them; JSON
	// leaves them out (Transport has them).
	Series []Series `json:"-"`
}

// stageJSON is Stage without its methods, for encoding/json.
type stageJSON Stage

// MarshalJSON encodes the stage, with its transport's figures under the
// transport's name.
func (s Stage) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(stageJSON(s))
	if err != nil || s.Transport == nil || s.Queue.Transport == "" {
		return b, err
	}
	t, err := json.Marshal(s.Transport)
	if err != nil {
		return nil, fmt.Errorf("stage %q: transport %s figures: %w", s.Name, s.Queue.Transport, err)
	}
	key, _ := json.Marshal(s.Queue.Transport)
	b = append(b[:len(b)-1], ',') // b is an object: {"name":...}
	b = append(append(append(b, key...), ':'), t...)
	return append(b, '}'), nil
}

// UnmarshalJSON decodes a stage, keeping its transport's figures as a
// json.RawMessage in Transport.
func (s *Stage) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, (*stageJSON)(s)); err != nil {
		return err
	}
	if s.Queue.Transport == "" {
		return nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	if raw, ok := all[s.Queue.Transport]; ok {
		s.Transport = raw
	}
	return nil
}

// Queue describes a stage's port.
type Queue struct {
	Depth    int    `json:"depth"`
	Capacity int    `json:"capacity"`
	Overflow string `json:"overflow"`
	// Bytes are the bytes of the records queued (their payloads; on a
	// transport, those its depth counts, as natsq.Stats tells), and
	// MaxBytes the queue's bound in bytes (queue.max_bytes; 0: none).
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Transport names the queue transport that carries the queue
	// ("nats": the depth is then the consumer's pending plus
	// ack-pending, and on a publishing process the events waiting there
	// to be published); empty for a local port.
	Transport string `json:"transport,omitempty"`
	Stream    string `json:"stream,omitempty"` // the transport's name for the queue: the JetStream stream
}

// Shards describes a stage with shard_by: its events wait between the
// port and the workers in per-key mailboxes (virtual shards), so that the
// events of one key are handled one at a time, in order.
type Shards struct {
	By     []string `json:"by"`     // the shard_by fields
	Count  int      `json:"count"`  // virtual shards (mailboxes)
	Queued int      `json:"queued"` // events in the mailboxes (Queue.Depth counts them too)
	Held   int      `json:"held"`   // shards a worker holds now
	// Busiest is the busiest shard's share of the recent events (about
	// the last 16k): 1/Count is an even spread; one hot key shows as its
	// share of the traffic.
	Busiest float64 `json:"busiest"`
}

// Pool describes a stage's worker pool. Running, Blocked and Waiting
// are parts of Workers.
type Pool struct {
	// Workers counts the pool's workers: as many as its controller (or
	// an operator) sized it to (Control's workers.now), and more while
	// retired ones finish the batch they hold.
	Workers     int `json:"workers"`
	Concurrency int `json:"concurrency"`
	Running     int `json:"running"`
	Blocked     int `json:"blocked"`
	Waiting     int `json:"waiting"`
	// Retiring counts the workers retired from the pool that still hold
	// a batch (a call into a database that does not answer): counted in
	// Workers, gone once the call returns.
	Retiring int `json:"retiring,omitempty"`
}

// Latency are latency quantiles in milliseconds: for a handler stage,
// from entering its queue to the end of the handler call; for a source,
// from reading a record to its completion. The quantiles are of what
// finished in the last 10 to 20 seconds; OldestMs shows a stall as it
// happens.
type Latency struct {
	// P50 and P99 are NaN when nothing finished in the window (a stage
	// idle, or stalled on a database that does not answer), as
	// Prometheus has a summary's quantiles without observations; JSON,
	// which has no NaN, shows them as null.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	// OldestMs is the age of the oldest unfinished event: for a handler
	// stage, of the events in its handler's calls, since they entered
	// its queue; for a source, of the events it made, since they were
	// read. 0 when nothing is unfinished. A lower bound, within 100 ms.
	OldestMs float64 `json:"oldest_ms"`
}

// Millis is a latency in milliseconds that JSON shows as null when it is
// NaN (nothing finished, so no latency to tell): encoding/json refuses
// NaN, and a 0 would read as a fast stage.
type Millis float64

// MarshalJSON encodes m, NaN as null.
func (m Millis) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(m)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(m))
}

// latencyJSON is Latency with its quantiles nullable, for encoding/json.
type latencyJSON struct {
	P50      Millis  `json:"p50"`
	P99      Millis  `json:"p99"`
	OldestMs float64 `json:"oldest_ms"`
}

// MarshalJSON encodes the latency with a NaN quantile as null.
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(latencyJSON{P50: Millis(l.P50), P99: Millis(l.P99), OldestMs: l.OldestMs})
}

// UnmarshalJSON decodes a latency, a null (or missing) quantile as NaN:
// a null leaves a field as it was, and they start as NaN.
func (l *Latency) UnmarshalJSON(b []byte) error {
	j := latencyJSON{P50: Millis(math.NaN()), P99: Millis(math.NaN())}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Latency{P50: float64(j.P50), P99: float64(j.P99), OldestMs: j.OldestMs}
	return nil
}

// Series is one figure that /metrics shows for a stage besides the ones
// every stage has: a queue transport's. A transport declares its series
// when it registers (Value 0, LabelValue empty) and reports them with
// their values in Stage.Series; /metrics labels them with the stage (and
// the pipeline).
type Series struct {
	Name       string // pipeline_stage_nats_pending
	Help       string
	Counter    bool   // a counter; otherwise a gauge
	Label      string // a label besides stage, or "" (dead letters: reason)
	LabelValue string // the label's value
	Value      float64
}
