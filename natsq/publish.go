package natsq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Publisher returns the handler of the stage that stands in, in a process
// that routes events to the queue's stage, for the stage's queue: it
// publishes each event of its batches to the stream and finishes the event
// once JetStream has acknowledged the publish (PubAck). The pipeline runs
// it as a stage with the queue's capacity and overflow, so events reach it
// through a local port like any stage's.
//
// A publish that fails for a reason that may pass (no PubAck in time, the
// connection is down, the server restarts) is retried with the same
// Nats-Msg-Id, so the stream stores it once. When the stream is at its
// limits (discard new) the queue is full: under overflow block the
// publisher retries until there is room, and the local queue fills behind
// it, pushing back on the stages upstream; under overflow reject the event
// is finished with stage.ErrBusy. A message the stream refuses for good
// (over its largest message size) fails its event.
func (q *Queue) Publisher() stage.Handler { return &publisher{q: q} }

type publisher struct {
	q      *Queue
	js     jetstream.JetStream
	opened atomic.Bool
	name   string // the connection's name, sent as Seda-Publisher
}

var _ interface {
	stage.Handler
	Start(context.Context) error
	Close() error
} = (*publisher)(nil)

// Start connects and makes sure the streams exist.
func (p *publisher) Start(ctx context.Context) error {
	js, err := p.q.c.open(ctx)
	if err != nil {
		return err
	}
	p.opened.Store(true)
	p.js = js
	p.name = p.q.c.connName()
	if p.q.c.cfg.Name != "" {
		p.name = p.q.c.cfg.Name
	}
	p.q.st.publishing.Store(true)
	return p.q.ensureStreams(ctx, js)
}

// Close releases the connection.
func (p *publisher) Close() error {
	if p.opened.CompareAndSwap(true, false) {
		p.q.c.release()
	}
	return nil
}

// item is one event of a batch on its way to the stream.
type item struct {
	ev  *stage.Event
	msg *nats.Msg
	paf jetstream.PubAckFuture
	err error // why the last publish failed
}

// Handle publishes the batch and waits for the PubAcks, retrying what may
// succeed later; it returns once every event is finished, or ctx ends.
func (p *publisher) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	q := p.q
	todo := make([]*item, 0, len(batch))
	for _, ev := range batch {
		msg, err := encodeEvent(ev, subject(q.cfg.Stream), q.c.pipeline, p.name, nuid.Next())
		if err != nil {
			ev.Done(fmt.Errorf("stage %q: record %d: %w", q.stage, ev.Seq, err))
			continue
		}
		todo = append(todo, &item{ev: ev, msg: msg})
	}
	wait := 50 * time.Millisecond
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt > 0 {
			q.st.publishRetries.Add(uint64(len(todo)))
			var werr error
			stage.Blocking(ctx, func() { werr = sleep(ctx, wait) })
			if werr != nil {
				return werr
			}
			wait = min(2*wait, 2*time.Second)
		}
		for _, it := range todo {
			it.paf, it.err = p.js.PublishMsgAsync(it.msg)
		}
		var retry []*item
		var werr error
		stage.Blocking(ctx, func() {
			// One deadline for the batch's PubAcks, rather than nats.go's
			// timer per message: a PubAck not back by then is published
			// again (same Nats-Msg-Id).
			deadline := time.NewTimer(pubAckWait)
			defer deadline.Stop()
			late := false
			for _, it := range todo {
				switch {
				case it.err != nil:
				case late: // past the deadline: take what has come
					select {
					case <-it.paf.Ok():
					case it.err = <-it.paf.Err():
					default:
						it.err = errNoPubAck
					}
				default:
					select {
					case <-it.paf.Ok():
					case it.err = <-it.paf.Err():
					case <-deadline.C:
						it.err, late = errNoPubAck, true
					case <-ctx.Done():
						werr = ctx.Err()
						return
					}
				}
				if it.err == nil {
					q.st.published.Add(1)
					it.ev.Done(nil)
					continue
				}
				if p.failed(it) {
					retry = append(retry, it)
				}
			}
		})
		if werr != nil {
			return werr
		}
		stage.ReportAttempt(ctx, publishOutcome(retry))
		if len(retry) > 0 && (attempt == 0 || attempt%20 == 19) {
			q.log.Warn("nats: publishing to the stream failed; retrying", zap.Int("events", len(retry)),
				zap.Int("attempt", attempt+1), zap.String("error", errText(retry[0].err)))
		}
		todo = retry
	}
	return nil
}

// failed deals with a publish that failed: it finishes the event when
// retrying cannot help, and reports whether to retry.
func (p *publisher) failed(it *item) bool {
	q := p.q
	var api *jetstream.APIError
	switch {
	case errors.As(it.err, &api) && isFull(api):
		q.st.full.Add(1)
		if q.overflow == port.Reject {
			it.ev.Done(stage.ErrBusy)
			return false
		}
		return true
	case errors.Is(it.err, nats.ErrMaxPayload),
		errors.As(it.err, &api) && (api.Code != 503 && api.Code != 0 || strings.Contains(api.Description, "message size exceeds")):
		// Refused for good: too large, or a stream of other subjects.
		it.ev.Done(fmt.Errorf("stage %q: record %d: stream %s refused it: %w", q.stage, it.ev.Seq, q.cfg.Stream, it.err))
		return false
	}
	return true // timed out, disconnected, no responders, 503: the server may come back
}

// isFull reports whether the stream refused a message because it is at
// its limits (discard new).
func isFull(api *jetstream.APIError) bool {
	d := api.Description
	return strings.Contains(d, "maximum messages exceeded") || strings.Contains(d, "maximum bytes exceeded") ||
		strings.Contains(d, "insufficient resources")
}

// pubAckWait bounds the wait for a batch's PubAcks.
const pubAckWait = 10 * time.Second

var errNoPubAck = errors.New("no PubAck in time")

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
