package natsq

// This file holds what the consumer does with envelopes it cannot simply
// ack or NAK: publishing dead letters, one per event given up, before
// settling their envelope; and telling JetStream that envelopes held long
// by the stage are in progress.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// giveUp hands an envelope with dead letters to the dead-letter goroutine.
func (c *consumer) giveUp(e *envelope) {
	c.unhold(e)
	select {
	case c.dead <- e:
	case <-c.ctx.Done():
		e.nak(0)
	}
}

// deadLetters publishes the dead letters of the envelopes given up to the
// dead-letter stream, one message per event with its reason, and once
// the stream has them all, acks the envelope (or, when other events of it
// failed for a reason that may pass, NAKs it). When the dead-letter
// stream cannot take them, the envelope is NAKed and comes back later;
// the dead letters' ids make a second publish of one stored once. Once
// Drain says no more come, it publishes what is queued and returns.
func (c *consumer) deadLetters() {
	defer c.deadWG.Done()
	q := c.q
	end := c.deadEnd // once closed, each round takes what is queued, if anything
	for {
		var e *envelope
		select {
		case e = <-c.dead:
		case <-end:
			select {
			case e = <-c.dead:
			default:
				return
			}
		case <-c.ctx.Done():
			// Close: what is left goes back to the stream.
			for {
				select {
				case e := <-c.dead:
					e.nak(0)
				default:
					return
				}
			}
		}
		e.mu.Lock()
		dead, failed, cut := e.dead, e.failed, e.cut
		e.mu.Unlock()
		if err := c.publishDead(e, dead); err != nil {
			if c.ctx.Err() == nil { // closing is no failure: the envelope comes back
				q.st.deadErrors.Add(1)
				q.st.deadFailed(errText(err), time.Now())
				// At most a line a second, as for the dead letters: with
				// the dead-letter stream away, every envelope holding a
				// dead letter failed at each delivery, a line each.
				// /stats and /metrics count every failure.
				if ok, skipped := q.deadFailLog.allow(); ok {
					fields := []zap.Field{zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err))}
					if skipped > 0 {
						fields = append(fields, zap.Uint64("not_logged", skipped))
					}
					q.log.Warn("nats: dead-lettering failed; the envelope comes back later", fields...)
				}
			}
			e.nak(c.backoff(e.delivered, err))
			continue
		}
		q.st.deadStored()
		for _, d := range append(dead, ptrs(e.whole)...) {
			q.st.dead(d.class)
			// At most a line a second: a client sending bad records made
			// one line per record (100,000 records, 30 MB of log). The
			// line says how many were not logged before it; /stats and
			// /metrics count them all.
			ok, skipped := q.deadLog.allow()
			if !ok {
				continue
			}
			fields := []zap.Field{zap.String("dead_stream", deadStream(q.cfg.Stream)),
				zap.Uint64("stream_seq", e.streamSeq), zap.Int("index", d.i), zap.String("class", d.class),
				zap.String("reason", stage.Redact(d.reason))}
			if skipped > 0 {
				fields = append(fields, zap.Uint64("not_logged", skipped))
			}
			q.log.Warn("nats: event dead-lettered", fields...)
		}
		switch {
		case e.whole != nil:
			reason := stage.Redact(e.whole.reason)
			if len(reason) > 200 {
				reason = reason[:200]
			}
			if err := e.msg.TermWithReason(reason); err != nil {
				q.log.Debug("nats: term failed", zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
			}
		case failed != nil:
			c.redeliver(e, failed, cut)
		default:
			e.ack()
		}
		e.release()
	}
}

// maxDeadReason bounds a dead letter's reason header: a reason quoting a
// large value (PostgreSQL's for a bad field) would otherwise take the room
// of the data.
const maxDeadReason = 1024

// deadHeaderRoom is room kept besides the headers counted: the Truncated
// header and the protocol's framing.
const deadHeaderRoom = 256

// headerBytes is about how many bytes h takes on the wire.
func headerBytes(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func ptrs(d *deadEvent) []deadEvent {
	if d == nil {
		return nil
	}
	return []deadEvent{*d}
}

// publishDead publishes an envelope's dead letters and waits for the
// dead-letter stream's PubAcks.
func (c *consumer) publishDead(e *envelope, dead []deadEvent) error {
	q := c.q
	base := nats.Header{}
	if tr := e.msg.Headers().Get(codec.HdrTrace); tr != "" {
		base.Set(codec.HdrTrace, tr)
	}
	base.Set(codec.HdrStreamSeq, strconv.FormatUint(e.streamSeq, 10))
	base.Set(codec.HdrDelivered, strconv.FormatUint(e.delivered, 10))
	if e.firstSeq != e.streamSeq {
		base.Set(codec.HdrFirstSeq, strconv.FormatUint(e.firstSeq, 10))
	}
	var msgs []*nats.Msg
	maxPayload := int(c.js.Conn().MaxPayload())
	add := func(data []byte, d deadEvent, id string, index bool) {
		h := make(nats.Header, len(base)+5)
		for k, v := range base {
			h[k] = v
		}
		reason := stage.Redact(d.reason) // stored, and read by whoever replays dead letters
		if len(reason) > maxDeadReason {
			reason = strings.ToValidUTF8(reason[:maxDeadReason], "") + "..."
		}
		h.Set(codec.HdrReason, reason)
		h.Set(codec.HdrClass, d.class)
		if index {
			h.Set(codec.HdrIndex, strconv.Itoa(d.i))
		}
		// One id per event of a work-stream message: dead-lettered twice
		// (a crash between publish and ack, a redelivered envelope, or
		// one requeued, whose copy keeps its first sequence number), it
		// is stored once.
		h.Set(nats.MsgIdHdr, id)
		// A dead letter must fit max_payload, or it is refused at every
		// try and its envelope comes back for ever: a message near the
		// limit (a foreign one, or one stored before max_payload was
		// lowered) is cut, and says how long it was.
		if room := maxPayload - headerBytes(h) - deadHeaderRoom; len(data) > room {
			h.Set(codec.HdrTruncated, strconv.Itoa(len(data)))
			data = data[:max(room, 0)]
		}
		msgs = append(msgs, &nats.Msg{Subject: subject(deadStream(q.cfg.Stream)), Data: data, Header: h})
	}
	if e.whole != nil {
		add(e.msg.Data(), *e.whole, fmt.Sprintf("dead-%s-%d", q.cfg.Stream, e.streamSeq), false)
	}
	data := e.data
	for _, d := range dead {
		add(codec.DeadData(data[e.at[d.i]:e.at[d.i+1]]), d, fmt.Sprintf("dead-%s-%d-%d", q.cfg.Stream, e.firstSeq, d.i), true)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	failed := func(err error) error {
		return fmt.Errorf("stage %q: dead letters of %s message %d: %w", q.stage, q.cfg.Stream, e.streamSeq, err)
	}
	// Closing: the envelope is NAKed, so store no dead letter of it (its
	// next delivery decides again).
	if err := ctx.Err(); err != nil {
		return failed(err)
	}
	pafs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		paf, err := publishAsync(ctx, c.js, m, 10*time.Second, jetstream.WithExpectStream(deadStream(q.cfg.Stream)))
		if err != nil {
			return failed(err)
		}
		pafs = append(pafs, paf)
	}
	for _, paf := range pafs {
		select {
		case <-paf.Ok():
		case err := <-paf.Err():
			return failed(err)
		case <-ctx.Done():
			return failed(ctx.Err())
		}
	}
	return nil
}

// keepInProgress tells JetStream, every third of ack_wait, that the
// envelopes held are in progress, so that their events may wait in the
// stage (behind a slow or absent database) without being delivered again
// meanwhile. A process that dies stops telling, and JetStream delivers
// them again after ack_wait. An envelope told of at a tick, or taken less
// than half a tick before it, waits for the next: skipping only those
// keeps every envelope's gap under two thirds of ack_wait even when a
// tick comes late (skipping those told less than a whole tick before,
// one late tick made the next skip them, and the gap reached two thirds
// plus the delay: a third of ack_wait to spare).
func (c *consumer) keepInProgress() {
	defer c.keepWG.Done()
	every := c.q.cfg.AckWait / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.hmu.Lock()
			for e, at := range c.held {
				if now.Sub(at) < every/2 {
					continue
				}
				if err := e.msg.InProgress(); err != nil {
					c.q.log.Debug("nats: in progress", zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
				}
				c.held[e] = now
				c.q.st.inProgress.Add(1)
			}
			c.hmu.Unlock()
		}
	}
}

// logLimit lets one log line through a second, and counts the lines it
// holds back, so that the next line logged says how many were not.
type logLimit struct {
	next    atomic.Int64  // unix ns before which nothing is logged
	skipped atomic.Uint64 // lines held back since the last one logged
}

// allow reports whether a line may be logged now and, if so, how many
// were held back since the last one logged.
func (l *logLimit) allow() (ok bool, skipped uint64) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(time.Second)) {
		l.skipped.Add(1)
		return false, 0
	}
	return true, l.skipped.Swap(0)
}
