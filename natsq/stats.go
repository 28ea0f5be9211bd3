package natsq

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stagedserver/seda/stage"
)

// infoEvery is how old the stream and consumer figures /stats shows may
// get: they are asked of the server at most this often, and only while
// someone reads /stats.
const infoEvery = 500 * time.Millisecond

// queueCounters are a queue's figures in this process.
type queueCounters struct {
	publishing, consuming               atomic.Bool
	published, publishRetries, full     atomic.Uint64
	taken, acked, naked                 atomic.Uint64
	ackErrors, deadErrors               atomic.Uint64
	deadRefused, deadMax, deadUndecoded atomic.Uint64

	mu       sync.Mutex
	cons     jetstream.Consumer // set by a consumer; nil on a publishing-only process
	info     stage.NatsStats    // the server's figures, last read
	infoAt   time.Time
	fetching bool
	wg       sync.WaitGroup // the goroutine reading the figures
}

func (s *queueCounters) init() {}

func (s *queueCounters) setConsumer(c jetstream.Consumer) {
	s.mu.Lock()
	s.cons = c
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
// server's pending and ack-pending counts of the stage's consumer (or,
// before any process has created the consumer, the stream's message
// count as pending). The server's figures are at most about half a second
// old; reading them never blocks Stats.
func (q *Queue) Stats() stage.NatsStats {
	s := &q.st
	s.mu.Lock()
	if s.infoAt.IsZero() && !s.fetching {
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
	if time.Since(s.infoAt) > infoEvery && !s.fetching {
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
	ns.AckErrors = s.ackErrors.Load()
	ns.DeadErrors = s.deadErrors.Load()
	r, m, u := s.deadRefused.Load(), s.deadMax.Load(), s.deadUndecoded.Load()
	ns.DeadLettered = r + m + u
	ns.Dead = stage.NatsDead{Refused: r, MaxDeliver: m, Undecodable: u}
	return ns
}

// readInfo asks the server for the stream's and the consumer's figures.
func (q *Queue) readInfo(js jetstream.JetStream, cons jetstream.Consumer) {
	defer q.st.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ns stage.NatsStats
	var errText string
	if str, err := js.Stream(ctx, q.cfg.Stream); err != nil {
		errText = err.Error()
	} else if si, err := str.Info(ctx); err != nil {
		errText = err.Error()
	} else {
		ns.StreamMsgs, ns.StreamBytes = si.State.Msgs, si.State.Bytes
		ns.MaxMsgs = si.Config.MaxMsgs
		if cons == nil {
			cons, err = str.Consumer(ctx, consumerName(q.stage))
			if err != nil {
				cons = nil
			}
		}
	}
	if cons != nil {
		if ci, err := cons.Info(ctx); err == nil {
			ns.Pending, ns.AckPending, ns.Redelivered = ci.NumPending, uint64(ci.NumAckPending), uint64(ci.NumRedelivered)
			ns.ConsumerFound = true
		} else if errText == "" {
			errText = err.Error()
		}
	}
	ns.Error = stage.Redact(errText)
	q.st.mu.Lock()
	q.st.info = ns
	q.st.infoAt = time.Now()
	q.st.fetching = false
	q.st.mu.Unlock()
}

// Fill puts the queue's figures into a stage's /stats entry: the nats
// object, and the consumer's pending plus ack-pending as the queue's depth
// (the stream's message count before a consumer exists), with the
// stream's message limit as its capacity when it has one.
func (q *Queue) Fill(st *stage.Stats) {
	ns := q.Stats()
	ns.LocalDepth = st.Queue.Depth
	st.Nats = &ns
	st.Queue.Transport = "nats"
	st.Queue.Stream = q.cfg.Stream
	if ns.ConsumerFound {
		st.Queue.Depth = int(ns.Pending + ns.AckPending)
	} else {
		st.Queue.Depth = int(ns.StreamMsgs)
	}
	if ns.MaxMsgs > 0 {
		st.Queue.Capacity = int(ns.MaxMsgs)
	}
}

// Wait returns once the goroutine that reads the server's figures, if
// one runs, has returned.
func (q *Queue) Wait() { q.st.wg.Wait() }
