package natsq

// This file holds the publisher: the handler of the stand-in stage, which
// packs a batch's events into envelopes, publishes them asynchronously and
// finishes the events on their PubAck.

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

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Publisher returns the handler of the stage that stands in, in a process
// that routes events to the queue's stage, for the stage's queue: it packs
// the events of each batch into envelopes (at most EnvelopeEvents events
// and EnvelopeBytes bytes each, see natsq/internal/codec), publishes them to the
// stream asynchronously, and finishes an envelope's events once JetStream
// has acknowledged it (PubAck), so that an event finished without error is
// stored in the stream. The pipeline runs it as a stage with the queue's
// capacity and overflow, so events reach it through a local port like any
// stage's; its batch (and so an envelope's size under load) is the
// stage's batch.
//
// PubAcks in flight are bounded (pubAcksInFlight, over the process): a
// publish that would pass the bound waits for room. An envelope whose
// publish fails for a reason that may pass (no PubAck in time, the
// connection is down, the server restarts) is published again with the
// same Nats-Msg-Id, so the stream stores it once. When the stream is at
// its limits (discard new) the queue is full: under overflow block the
// publisher retries until there is room, and the local queue fills behind
// it, pushing back on the stages upstream; under overflow reject the
// envelope's events are finished with stage.ErrBusy. An envelope the
// stream refuses for good (over its largest message size) fails its
// events.
func (q *Queue) Publisher() stage.Handler { return &publisher{q: q} }

type publisher struct {
	q        *Queue
	js       jetstream.JetStream
	opened   atomic.Bool
	name     string // the connection's name, sent in Seda-Trace
	maxBytes int    // an envelope's data at most: EnvelopeBytes, under the server's max_payload
	maxOne   int    // an envelope of one event's data at most: under the server's max_payload
}

var _ interface {
	stage.Handler
	Start(context.Context) error
	Close() error
} = (*publisher)(nil)

// headerRoom is what an envelope leaves of the server's max_payload for
// its headers and subject.
const headerRoom = 4 << 10

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
	p.maxOne = max(int(js.Conn().MaxPayload()-headerRoom), 1<<10)
	p.maxBytes = min(int(p.q.cfg.EnvelopeBytes), p.maxOne)
	p.q.st.publishing.Store(true)
	return p.q.ensureStreams(ctx, js)
}

// Close releases the connection.
func (p *publisher) Close() error {
	if p.opened.CompareAndSwap(true, false) {
		st := &p.q.st
		if n := st.envelopesOut.Load(); n > 0 {
			p.q.log.Info("nats: published", zap.Uint64("events", st.published.Load()), zap.Uint64("envelopes", n),
				zap.Float64("events_per_envelope", float64(st.published.Load())/float64(n)))
		}
		p.q.c.release()
	}
	return nil
}

// item is one envelope on its way to the stream.
type item struct {
	evs  []*stage.Event
	msg  *nats.Msg
	paf  jetstream.PubAckFuture
	err  error // why the last publish failed
	size int   // the envelope's bytes, counted in the queue's unpublished bytes
	done bool  // its events are finished: no longer counted as unpublished
	full bool  // the stream refused it at its limits: its events are counted in full
}

// hold counts the envelopes' events and bytes as unpublished: the stand-in
// holds them until the stream has them, and /stats counts them in the
// queue's depth (see Queue.fill).
func (q *Queue) hold(items []*item) {
	var evs, size int
	for _, it := range items {
		it.size = len(it.msg.Data)
		evs += len(it.evs)
		size += it.size
	}
	q.st.unpublished.Add(int64(evs))
	q.st.unpublishedBytes.Add(int64(size))
}

// release stops counting an envelope as unpublished, once: its events
// were finished (the stream has them, or they failed), or Handle returned
// without finishing them (the stage fails them).
func (q *Queue) release(it *item) {
	if it.done {
		return
	}
	it.done = true
	q.st.unpublished.Add(-int64(len(it.evs)))
	q.st.unpublishedBytes.Add(-int64(it.size))
}

// Handle packs the batch into envelopes, publishes them and waits for
// their PubAcks, retrying what may succeed later; it returns once every
// event is finished, or ctx ends.
func (p *publisher) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	q := p.q
	todo := p.pack(batch)
	q.hold(todo)
	defer func(all []*item) {
		for _, it := range all {
			q.release(it)
		}
	}(todo)
	wait := 50 * time.Millisecond
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt > 0 {
			for _, it := range todo {
				q.st.publishRetries.Add(uint64(len(it.evs)))
			}
			var werr error
			stage.Blocking(ctx, func() { werr = sleep(ctx, wait) })
			if werr != nil {
				return werr
			}
			wait = min(2*wait, 2*time.Second)
		}
		var retry []*item
		var werr error
		stage.Blocking(ctx, func() {
			// publishAsync waits while pubAcksInFlight are out.
			for _, it := range todo {
				it.paf, it.err = publishAsync(ctx, p.js, it.msg, q.c.pubAckWait)
				if it.err != nil && ctx.Err() != nil {
					werr = ctx.Err()
					return
				}
			}
			// One deadline for the batch's PubAcks, rather than nats.go's
			// timer per message: a PubAck not back by then is published
			// again (same Nats-Msg-Id).
			deadline := time.NewTimer(q.c.pubAckWait)
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
					q.st.published.Add(uint64(len(it.evs)))
					q.st.envelopesOut.Add(1)
					q.release(it)
					for _, ev := range it.evs {
						ev.Done(nil)
					}
					q.bufs.Put(it.msg.Data) // nats.go has written it and holds no retry of it
					it.msg.Data = nil
					continue
				}
				if p.failed(it) {
					retry = append(retry, it)
				} else {
					q.release(it)
				}
			}
		})
		if werr != nil {
			return werr
		}
		stage.ReportAttempt(ctx, publishOutcome(retry))
		if len(retry) > 0 && (attempt == 0 || attempt%20 == 19) {
			q.log.Warn("nats: publishing to the stream failed; retrying", zap.Int("envelopes", len(retry)),
				zap.Int("attempt", attempt+1), zap.String("error", errText(retry[0].err)))
		}
		todo = retry
	}
	return nil
}

// pack puts the batch's events into envelopes, each with its own
// Nats-Msg-Id. An event that cannot be encoded is finished with the error.
func (p *publisher) pack(batch []*stage.Event) []*item {
	q := p.q
	b := codec.NewBuilder(q.cfg.EnvelopeEvents, p.maxBytes, p.maxOne, q.cfg.Compress == "s2", &q.bufs)
	var todo []*item
	take := func() {
		m, evs := takeMsg(b, q.cfg.Stream, q.c.pipeline, p.name, nuid.Next())
		todo = append(todo, &item{evs: evs, msg: m})
	}
	for _, ev := range batch {
		fits, err := b.Add(ev)
		if !fits {
			take()
			_, err = b.Add(ev)
		}
		if err != nil {
			ev.Done(fmt.Errorf("stage %q: record %d: %w", q.stage, ev.Seq, err))
		}
	}
	if !b.Empty() {
		take()
	}
	return todo
}

// failed deals with a publish that failed: it finishes the envelope's
// events when retrying cannot help, and reports whether to retry.
func (p *publisher) failed(it *item) bool {
	q := p.q
	var api *jetstream.APIError
	switch {
	case errors.As(it.err, &api) && isFull(api):
		// An envelope's events are counted the first time the stream
		// refuses it: under overflow block it is tried again until there
		// is room (each try counted in publishRetries), and counting every
		// refusal had full count an event once per try.
		if !it.full {
			it.full = true
			q.st.full.Add(uint64(len(it.evs)))
		}
		if q.overflow == port.Reject {
			for _, ev := range it.evs {
				ev.Done(stage.ErrBusy)
			}
			return false
		}
		return true
	case errors.Is(it.err, nats.ErrMaxPayload),
		errors.As(it.err, &api) && (api.Code != 503 && api.Code != 0 || strings.Contains(api.Description, "message size exceeds")):
		// Refused for good: too large, or a stream of other subjects.
		for _, ev := range it.evs {
			err := fmt.Errorf("stage %q: record %d: stream %s refused its envelope (%d events, %d bytes): %w",
				q.stage, ev.Seq, q.cfg.Stream, len(it.evs), len(it.msg.Data), it.err)
			if errors.Is(it.err, nats.ErrMaxPayload) || strings.Contains(errText(it.err), "size exceeds") {
				err = stage.WithClass(err, stage.ErrTooLarge)
			}
			ev.Done(err)
		}
		return false
	}
	return true // timed out, disconnected, no responders, 503, stalled: the server may come back
}

// isFull reports whether the stream refused a message because it is at
// its limits (discard new).
func isFull(api *jetstream.APIError) bool {
	d := api.Description
	return strings.Contains(d, "maximum messages exceeded") || strings.Contains(d, "maximum bytes exceeded") ||
		strings.Contains(d, "insufficient resources")
}

// pubAcksInFlight bounds the envelopes published and not yet PubAcked,
// over the process (nats.go's PublishAsyncMaxPending): with envelopes of
// about a thousand events, enough to keep the server busy on a fast
// network, and a bound on the memory held for retries.
const pubAcksInFlight = 256

// defaultPubAckWait bounds the wait for a batch's PubAcks (a client's
// pubAckWait).
const defaultPubAckWait = 10 * time.Second

// pubAckForget is how long nats.go keeps waiting for a PubAck the
// publisher has given up on (it publishes again after pubAckWait): until
// then it holds one of the pubAcksInFlight. nats.go frees one only when
// its PubAck comes, or on a reconnect, so PubAcks lost while the
// connection stayed up (a stream leader changing, the stream gone while
// a plain subscriber takes its subject) would add up until every publish
// stalled.
func pubAckForget(pubAckWait time.Duration) time.Duration { return 2 * pubAckWait }

var errNoPubAck = errors.New("no PubAck in time")

// stallSlice is how long publishAsync waits for room among the
// pubAcksInFlight before it looks at its context again.
const stallSlice = 100 * time.Millisecond

// publishAsync is js.PublishMsgAsync, which waits for room while
// pubAcksInFlight PubAcks are out, up to stall, and then fails with
// jetstream.ErrTooManyStalledMsgs. nats.go's wait does not watch a
// context, so it is taken in slices of stallSlice, and the publish
// returns ctx's error once ctx ends (phase two of a stop): Abort would
// otherwise wait out the stall, up to pubAckWait.
func publishAsync(ctx context.Context, js jetstream.JetStream, m *nats.Msg, stall time.Duration, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	end := time.Now().Add(stall)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := max(min(stallSlice, time.Until(end)), time.Millisecond)
		paf, err := js.PublishMsgAsync(m, append(opts[:len(opts):len(opts)], jetstream.WithStallWait(wait))...)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || !time.Now().Before(end) {
			return paf, err
		}
	}
}

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
