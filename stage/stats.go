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
	// Remote marks a stage that runs in other processes: this one only
	// hands events to its queue (a nats queue). Its in counts the events
	// handed to the queue, its out those the queue has taken for good.
	Remote bool `json:"remote,omitempty"`
	// Nats describes a queue on NATS JetStream (queue.transport nats).
	Nats *NatsStats `json:"nats,omitempty"`
}

// NatsStats are the figures of a stage whose queue is a JetStream stream.
// The server's figures (pending, ack_pending, redelivered, stream_msgs,
// stream_bytes, max_msgs) are the same in every process; the counters are
// this process's.
type NatsStats struct {
	Stream     string `json:"stream"`
	DeadStream string `json:"dead_stream"`
	Consumer   string `json:"consumer"`   // the durable consumer, named after the stage
	Connected  bool   `json:"connected"`  // the connection to NATS is up
	Publishing bool   `json:"publishing"` // stages of this process hand events to the stream
	Consuming  bool   `json:"consuming"`  // this process runs the stage: it pulls from the stream

	// The server's figures, InfoAgeS seconds old.
	Pending       uint64  `json:"pending"`     // messages not yet delivered to any process
	AckPending    uint64  `json:"ack_pending"` // delivered and not yet acked, in any process
	Redelivered   uint64  `json:"redelivered"` // delivered more than once and not yet acked
	StreamMsgs    uint64  `json:"stream_msgs"`
	StreamBytes   uint64  `json:"stream_bytes"`
	MaxMsgs       int64   `json:"max_msgs"` // the stream's message limit; -1: none
	ConsumerFound bool    `json:"consumer_found"`
	InfoAgeS      float64 `json:"info_age_s"`
	Error         string  `json:"error,omitempty"` // why the server's figures could not be read

	// This process's counters.
	Published      uint64   `json:"published"`       // PubAcked by JetStream
	PublishRetries uint64   `json:"publish_retries"` // publishes tried again (no PubAck, stream full under block)
	Full           uint64   `json:"full"`            // publishes refused because the stream was at its limits
	Taken          uint64   `json:"taken"`           // messages pulled and handed to the stage
	Acked          uint64   `json:"acked"`           // messages acked after the stage finished them
	Naked          uint64   `json:"naked"`           // messages NAKed to be delivered again (failures)
	AckErrors      uint64   `json:"ack_errors,omitempty"`
	DeadLettered   uint64   `json:"dead_lettered"` // messages moved to the dead-letter stream
	Dead           NatsDead `json:"dead"`          // the same, by reason
	DeadErrors     uint64   `json:"dead_errors,omitempty"`
	LocalDepth     int      `json:"local_depth"` // events in this process's local queue of the stage
}

// NatsDead counts dead letters by reason.
type NatsDead struct {
	Refused     uint64 `json:"refused"`     // the stage refused the event for good
	MaxDeliver  uint64 `json:"max_deliver"` // failed or unfinished max_deliver times
	Undecodable uint64 `json:"undecodable"` // not a message this framework wrote
}

// QueueStats describes a stage's port.
type QueueStats struct {
	Depth    int    `json:"depth"`
	Capacity int    `json:"capacity"`
	Overflow string `json:"overflow"`
	// Transport is "nats" for a queue on NATS JetStream (the depth is then
	// the consumer's pending plus ack-pending); empty for a local port.
	Transport string `json:"transport,omitempty"`
	Stream    string `json:"stream,omitempty"` // the JetStream stream, for transport nats
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
		if a := s.adm.Load(); a != nil {
			st.Control = a.stats()
		}
	}
	q := s.lat.quantiles(0.5, 0.99)
	st.Latency = LatencyStats{P50: q[0], P99: q[1]}
	return st
}
