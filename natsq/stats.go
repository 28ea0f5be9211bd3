package natsq

// This file holds a queue's figures: this process's counters, the
// server's, and how they go into a stage's /stats entry.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// infoEvery is how old the stream and consumer figures /stats shows may
// get: they are asked of the server at most this often, and only while
// someone reads /stats.
const infoEvery = 500 * time.Millisecond

// Stats are the figures of a stage whose queue is a JetStream stream:
// what /stats shows under "nats" (stats.Stage.Transport). The server's
// figures (pending, ack_pending, redelivered, stream_msgs, stream_bytes,
// max_msgs) are the same in every process and count messages, that is
// envelopes (the queue's depth in events is in stats.Stage.Queue); the
// counters are this process's and count events, but for those named
// envelopes.
type Stats struct {
	Stream     string `json:"stream"`
	DeadStream string `json:"dead_stream"`
	Consumer   string `json:"consumer"`   // the durable consumer, named after the stage
	Connected  bool   `json:"connected"`  // the connection to NATS is up
	Publishing bool   `json:"publishing"` // stages of this process hand events to the stream
	Consuming  bool   `json:"consuming"`  // this process runs the stage: it pulls from the stream

	// The server's figures, InfoAgeS seconds old.
	Pending       uint64 `json:"pending"`     // envelopes not yet delivered to any process
	AckPending    uint64 `json:"ack_pending"` // envelopes delivered and not yet acked, in any process
	Redelivered   uint64 `json:"redelivered"` // envelopes delivered more than once and not yet acked
	StreamMsgs    uint64 `json:"stream_msgs"` // envelopes in the stream
	StreamBytes   uint64 `json:"stream_bytes"`
	MaxMsgs       int64  `json:"max_msgs"`  // the stream's message limit; -1: none
	MaxBytes      int64  `json:"max_bytes"` // the stream's byte limit; -1: none
	ConsumerFound bool   `json:"consumer_found"`
	// PullsWaiting counts the pull requests of consuming processes
	// waiting at the server: each process running the stage keeps one
	// open while it has room, so 0 with envelopes pending says that none
	// is taking them.
	PullsWaiting int `json:"pulls_waiting"`
	// LastActive is when a process last took an envelope from the
	// consumer or acked one (the consumer's creation before either);
	// zero while the consumer is not found.
	LastActive time.Time `json:"last_active,omitzero"`
	InfoAgeS   float64   `json:"info_age_s"`
	Error      string    `json:"error,omitempty"` // why the server's figures could not be read; they are then the last it gave, InfoAgeS old

	// This process's counters.
	Published      uint64 `json:"published"`           // events PubAcked by JetStream
	PublishRetries uint64 `json:"publish_retries"`     // events whose publish was tried again, once per try (no PubAck, stream full under block)
	Full           uint64 `json:"full"`                // events whose envelope the stream refused at its limits, each once (under block, however often tried)
	Taken          uint64 `json:"taken"`               // events pulled and handed to the stage
	Acked          uint64 `json:"acked"`               // events whose envelope was acked after the stage finished them
	Naked          uint64 `json:"naked"`               // events whose envelope was NAKed to be delivered again (failures)
	EnvelopesOut   uint64 `json:"envelopes_published"` // envelopes PubAcked by JetStream
	EnvelopesIn    uint64 `json:"envelopes_taken"`     // envelopes pulled
	InProgress     uint64 `json:"in_progress"`         // InProgress sent for envelopes held, every third of ack_wait
	Requeued       uint64 `json:"envelopes_requeued"`  // envelopes a stop cut short at their max_deliver-th delivery, put back as fresh messages
	AckErrors      uint64 `json:"ack_errors,omitempty"`
	DeadLettered   uint64 `json:"dead_lettered"` // events moved to the dead-letter stream
	Dead           Dead   `json:"dead"`          // the same, by reason
	DeadErrors     uint64 `json:"dead_errors,omitempty"`
	// LocalDepth and LocalBytes are the events in this process's local
	// queue of the stage and their bytes (payloads): on a publishing
	// process, those waiting for the publisher (in one process that
	// publishes and consumes too, where /stats shows the stage's entry
	// with the stand-in's queue figures); on a process that only
	// consumes, those taken from the stream and waiting for a worker
	// (still in the stream, as ack-pending envelopes).
	LocalDepth int   `json:"local_depth"`
	LocalBytes int64 `json:"local_bytes"`
	// Unpublished and UnpublishedBytes are the events this process's
	// publisher holds in envelopes that the stream has not acknowledged
	// (PubAck) yet, and the envelopes' bytes: retried while the server is
	// away or the stream is full under overflow block. The queue's depth
	// and its capacity both count them.
	Unpublished      uint64 `json:"unpublished"`
	UnpublishedBytes uint64 `json:"unpublished_bytes"`
}

// Dead counts dead letters by reason.
type Dead struct {
	Refused     uint64 `json:"refused"`     // the stage refused the event for good
	MaxDeliver  uint64 `json:"max_deliver"` // failed or unfinished max_deliver times
	Undecodable uint64 `json:"undecodable"` // not a message this framework wrote
}

// StatsOf returns the NATS figures of a stage's /stats entry: those Fill
// put there, or those decoded from JSON; false when its queue is not on
// NATS.
func StatsOf(st stats.Stage) (Stats, bool) {
	if st.Queue.Transport != TransportName {
		return Stats{}, false
	}
	switch t := st.Transport.(type) {
	case Stats:
		return t, true
	case *Stats:
		return *t, t != nil
	case json.RawMessage:
		var ns Stats
		return ns, json.Unmarshal(t, &ns) == nil
	}
	return Stats{}, false
}

// Series declares the /metrics series of a queue on NATS (Value 0), as
// Fill reports them.
func Series() []stats.Series { return series(&Stats{}) }

// series are the /metrics series of a queue on NATS, declared (Value 0)
// with the transport (see Register) and filled in by Fill.
func series(ns *Stats) []stats.Series {
	return []stats.Series{
		{Name: "pipeline_stage_nats_pending", Help: "Envelopes (messages of many events) of the stage's stream not yet delivered to any process.", Value: float64(ns.Pending)},
		{Name: "pipeline_stage_nats_ack_pending", Help: "Envelopes (messages of many events) of the stage's stream delivered and not yet acked, in any process.", Value: float64(ns.AckPending)},
		{Name: "pipeline_stage_nats_published_total", Help: "Events this process published to the stage's stream (PubAcked).", Counter: true, Value: float64(ns.Published)},
		{Name: "pipeline_stage_nats_envelopes_published_total", Help: "Envelopes this process published to the stage's stream (PubAcked).", Counter: true, Value: float64(ns.EnvelopesOut)},
		{Name: "pipeline_stage_nats_full_total", Help: "Events whose envelope the stage's stream refused at its limits, each once however often tried: nacked busy under overflow reject, tried again until there is room under block.", Counter: true, Value: float64(ns.Full)},
		{Name: "pipeline_stage_nats_acked_total", Help: "Events whose envelope this process acked after the stage finished them.", Counter: true, Value: float64(ns.Acked)},
		{Name: "pipeline_stage_nats_naked_total", Help: "Events whose envelope this process NAKed to be delivered again.", Counter: true, Value: float64(ns.Naked)},
		{Name: "pipeline_stage_nats_in_progress_total", Help: "InProgress this process sent, every third of ack_wait, for envelopes its stage held.", Counter: true, Value: float64(ns.InProgress)},
		{Name: "pipeline_stage_nats_envelopes_requeued_total", Help: "Envelopes a stop in this process cut short at their max_deliver-th delivery, put back into the stage's stream as fresh messages.", Counter: true, Value: float64(ns.Requeued)},
		deadSeries(DeadRefused, ns.Dead.Refused),
		deadSeries(DeadMaxDeliver, ns.Dead.MaxDeliver),
		deadSeries(DeadUndecodable, ns.Dead.Undecodable),
	}
}

func deadSeries(reason string, n uint64) stats.Series {
	return stats.Series{Name: "pipeline_stage_nats_dead_lettered_total", Help: "Events this process moved to the dead-letter stream, by reason.",
		Counter: true, Label: "reason", LabelValue: reason, Value: float64(n)}
}

// queueCounters are a queue's figures in this process.
type queueCounters struct {
	publishing, consuming               atomic.Bool
	published, publishRetries, full     atomic.Uint64
	envelopesOut, envelopesIn           atomic.Uint64 // envelopes PubAcked, taken
	taken, acked, naked                 atomic.Uint64
	ackErrors, deadErrors, inProgress   atomic.Uint64
	requeued                            atomic.Uint64 // envelopes
	deadRefused, deadMax, deadUndecoded atomic.Uint64

	// unpublished and unpublishedBytes count the events, and the
	// envelopes' bytes, that the publisher holds until the stream
	// acknowledges them (see publisher.Handle).
	unpublished, unpublishedBytes atomic.Int64

	mu       sync.Mutex
	cons     jetstream.Consumer // set by a consumer; nil on a publishing-only process
	info     Stats              // the server's figures, last read
	events   uint64             // events in the stream's envelopes, last read
	infoAt   time.Time          // when the server last answered: the age of info and events
	askedAt  time.Time          // when the figures were last asked for, answered or not
	fetching bool
	wg       sync.WaitGroup // the goroutine reading the figures

	// Dead-lettering's failures (see consumerHealth): when the latest
	// came and its error, redacted, and when the present run of them
	// began (zero once a dead letter is stored). deadFailing is set while
	// deadFailFirst is, so that a dead letter stored takes no lock while
	// nothing failed.
	deadFailing                 atomic.Bool
	deadFailFirst, deadFailLast time.Time
	deadFailErr                 string

	// The consumer's start (see consumerHealth): since when this
	// process's consumer has wanted the connection (its Connect or Start
	// was called, and it is not closed), since when its Start has tried
	// to make the streams and the durable consumer (zero once made), and
	// the last error of those tries, redacted.
	wantSince, startSince time.Time
	startErr              string
}

func (s *queueCounters) init() {}

func (s *queueCounters) setConsumer(c jetstream.Consumer) {
	s.mu.Lock()
	s.cons = c
	s.mu.Unlock()
}

// wanted records that the consumer wants the connection from now on.
func (s *queueCounters) wanted(now time.Time) {
	s.mu.Lock()
	if s.wantSince.IsZero() {
		s.wantSince = now
	}
	s.mu.Unlock()
}

// deadFailed records that the dead letters of an envelope could not be
// published at now, for why (redacted). A failure more than
// deadFailingFor after the latest begins a new run.
func (s *queueCounters) deadFailed(why string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deadFailFirst.IsZero() || now.Sub(s.deadFailLast) >= deadFailingFor {
		s.deadFailFirst = now
	}
	s.deadFailLast, s.deadFailErr = now, why
	s.deadFailing.Store(true)
}

// deadStored records that an envelope's dead letters were published: the
// run of failures, if one was under way, is over.
func (s *queueCounters) deadStored() {
	if !s.deadFailing.Load() {
		return
	}
	s.mu.Lock()
	s.deadFailFirst = time.Time{}
	s.deadFailing.Store(false)
	s.mu.Unlock()
}

func (s *queueCounters) dead(class string) {
	switch class {
	case DeadRefused:
		s.deadRefused.Add(1)
	case DeadMaxDeliver:
		s.deadMax.Add(1)
	default:
		s.deadUndecoded.Add(1)
	}
}

// Stats returns the queue's figures: this process's counters and the
// server's pending and ack-pending counts of the stage's consumer, in
// envelopes (or, before any process has created the consumer, the
// stream's message count as pending). The server's figures are at most about half a second
// old; reading them never blocks Stats.
func (q *Queue) Stats() Stats {
	s := &q.st
	s.mu.Lock()
	if s.askedAt.IsZero() && !s.fetching {
		// The first figures are read at once, so that a stage's first
		// /stats does not show an empty stream.
		if js := q.c.jetStream(); js != nil {
			s.fetching = true
			s.wg.Add(1)
			cons := s.cons
			s.mu.Unlock()
			q.readInfo(js, cons)
			s.mu.Lock()
		}
	}
	ns := s.info
	if time.Since(s.askedAt) > infoEvery && !s.fetching {
		if js := q.c.jetStream(); js != nil {
			s.fetching = true
			s.wg.Add(1)
			go q.readInfo(js, s.cons)
		}
	}
	if !s.infoAt.IsZero() {
		ns.InfoAgeS = time.Since(s.infoAt).Seconds()
	}
	s.mu.Unlock()
	ns.Stream = q.cfg.Stream
	ns.DeadStream = deadStream(q.cfg.Stream)
	ns.Consumer = consumerName(q.stage)
	ns.Connected = q.c.connected()
	ns.Publishing = s.publishing.Load()
	ns.Consuming = s.consuming.Load()
	ns.Published = s.published.Load()
	ns.PublishRetries = s.publishRetries.Load()
	ns.Full = s.full.Load()
	ns.Taken = s.taken.Load()
	ns.Acked = s.acked.Load()
	ns.Naked = s.naked.Load()
	ns.EnvelopesOut = s.envelopesOut.Load()
	ns.EnvelopesIn = s.envelopesIn.Load()
	ns.InProgress = s.inProgress.Load()
	ns.Requeued = s.requeued.Load()
	ns.AckErrors = s.ackErrors.Load()
	ns.DeadErrors = s.deadErrors.Load()
	r, m, u := s.deadRefused.Load(), s.deadMax.Load(), s.deadUndecoded.Load()
	ns.DeadLettered = r + m + u
	ns.Dead = Dead{Refused: r, MaxDeliver: m, Undecodable: u}
	ns.Unpublished = uint64(max(0, s.unpublished.Load()))
	ns.UnpublishedBytes = uint64(max(0, s.unpublishedBytes.Load()))
	return ns
}

// readInfo asks the server for the stream's and the consumer's figures.
// When the server does not answer (it is away, or stopped and holding the
// connection open) the last figures and their age are kept and only
// Error is set: zero figures read as an empty stream and a missing
// consumer, and the stage's depth dropped to 0 while its backlog waited
// in the stream. A stream or consumer the server says is not there is an
// answer, and its figures are zero.
func (q *Queue) readInfo(js jetstream.JetStream, cons jetstream.Consumer) {
	defer q.st.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ns Stats
	var failed error // the server did not answer
	var errText string
	var events uint64
	if str, err := js.Stream(ctx, q.cfg.Stream); err != nil {
		errText = err.Error()
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			failed = err
		}
	} else if si, err := str.Info(ctx, jetstream.WithSubjectFilter(subject(q.cfg.Stream)+".>")); err != nil {
		errText = err.Error()
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			failed = err
		}
	} else {
		for subj, msgs := range si.State.Subjects {
			events += msgs * codec.EventsOn(subj)
		}
		ns.StreamMsgs, ns.StreamBytes = si.State.Msgs, si.State.Bytes
		ns.MaxMsgs, ns.MaxBytes = si.Config.MaxMsgs, si.Config.MaxBytes
		if cons == nil {
			cons, err = str.Consumer(ctx, consumerName(q.stage))
			if err != nil {
				cons = nil
				if !errors.Is(err, jetstream.ErrConsumerNotFound) {
					failed, errText = err, err.Error()
				}
			}
		}
	}
	if cons != nil && failed == nil {
		if ci, err := cons.Info(ctx); err == nil {
			ns.Pending, ns.AckPending, ns.Redelivered = ci.NumPending, uint64(ci.NumAckPending), uint64(ci.NumRedelivered)
			ns.ConsumerFound = true
			ns.PullsWaiting = ci.NumWaiting
			ns.LastActive = ci.Created
			for _, t := range []*time.Time{ci.Delivered.Last, ci.AckFloor.Last} {
				if t != nil && t.After(ns.LastActive) {
					ns.LastActive = *t
				}
			}
		} else {
			if !errors.Is(err, jetstream.ErrConsumerNotFound) {
				failed = err
			}
			if errText == "" {
				errText = err.Error()
			}
		}
	}
	q.st.mu.Lock()
	defer q.st.mu.Unlock()
	q.st.askedAt = time.Now()
	q.st.fetching = false
	if failed != nil {
		q.st.info.Error = stage.Redact(errText)
		return
	}
	ns.Error = stage.Redact(errText)
	q.st.info = ns
	q.st.events = events
	q.st.infoAt = q.st.askedAt
}

// Fill puts the queue's figures into the /stats entry of the stage that
// runs here (the consumer's Figures): the nats figures (Stats, with their
// /metrics series), and as the queue's depth the events the stream holds
// (its envelopes not yet acked: pending and ack-pending, in any process;
// counted from the envelopes' subjects, see natsq/internal/codec), and
// those this process's publisher holds that the stream has not taken
// yet; as its bytes, the stream's and the publisher's (envelopes, as
// stored). The local queue's events, taken from the stream, are counted
// there already. Its capacity is the stream's limits in events (see
// capacity), and the events the publisher holds, counted in the depth.
func (q *Queue) Fill(st *stats.Stage) { q.fill(st, false) }

// fill is Fill, returning the figures it put there. standIn says that st
// is the stand-in's entry, whose local queue holds events on their way to
// the stream: they are added to the depth and bytes, and the local
// queue's capacity to the stream's, so that a publishing process shows
// its backlog while the server is away (the stream's figures are then the
// last it gave, and they do not grow) or the stream is full.
func (q *Queue) fill(st *stats.Stage, standIn bool) Stats {
	ns := q.Stats()
	q.st.mu.Lock()
	events := q.st.events
	q.st.mu.Unlock()
	ns.LocalDepth, ns.LocalBytes = st.Queue.Depth, st.Queue.Bytes
	st.Transport = ns
	st.Series = series(&ns)
	st.Queue.Transport = TransportName
	st.Queue.Stream = q.cfg.Stream
	// The overflow is the stream's, as configured: a stage's local queue
	// behind a consumer is made to block (a refusal there would NAK
	// envelopes). Under reject the events the full stream refused were
	// finished busy, as a full port's are: they are the queue's
	// rejections, here where this process published them.
	st.Queue.Overflow = q.overflow.String()
	if q.overflow == port.Reject {
		st.Rejected += ns.Full
	}
	depth := events + ns.Unpublished
	bytes := ns.StreamBytes + ns.UnpublishedBytes
	local := 0
	if standIn {
		depth += uint64(ns.LocalDepth)
		bytes += uint64(ns.LocalBytes)
		local = st.Queue.Capacity
	}
	st.Queue.Depth, st.Queue.Bytes = int(min(depth, math.MaxInt32)), int64(min(bytes, math.MaxInt64))
	// The envelopes not yet PubAcked are held by the publisher, in
	// neither the stream nor the local queue: the room they take is
	// their own, so the capacity counts them as the depth does. Depth
	// then never passes capacity, and reaches it when the stream and the
	// local queue are full, as the queue pushes back or refuses (a front
	// with both full read 250 of 216).
	if c := capacity(ns, events, q.cfg.EnvelopeEvents, q.cfg.EnvelopeBytes); c > 0 {
		st.Queue.Capacity = int(min(int64(c)+int64(local)+int64(min(ns.Unpublished, math.MaxInt32)), math.MaxInt32))
	}
	return ns
}

// capacity is how many events a stream with the figures ns, holding
// events, takes before it is full: its message limit and its byte limit
// (whichever is reached first) in events at the envelopes' present size
// and bytes per event (while it is empty, full envelopes of envEvents
// events and envBytes bytes); 0 when it has neither limit. An estimate:
// envelopes grow and shrink with the load. Counting the message limit
// alone, a stream full at its byte limit showed 0.13% of its capacity.
func capacity(ns Stats, events uint64, envEvents int, envBytes int64) int {
	c := math.Inf(1)
	if ns.MaxMsgs > 0 {
		per := float64(envEvents)
		if ns.StreamMsgs > 0 && events > 0 {
			per = float64(events) / float64(ns.StreamMsgs)
		}
		c = float64(ns.MaxMsgs) * per
	}
	if ns.MaxBytes > 0 && envBytes > 0 {
		per := float64(envEvents) / float64(envBytes)
		if ns.StreamBytes > 0 && events > 0 {
			per = float64(events) / float64(ns.StreamBytes)
		}
		c = min(c, float64(ns.MaxBytes)*per)
	}
	if math.IsInf(c, 1) {
		return 0
	}
	return int(min(c, math.MaxInt32))
}

// Wait returns once the goroutine that reads the server's figures, if
// one runs, has returned.
func (q *Queue) Wait() { q.st.wg.Wait() }
