package natsq

// This file holds what the publisher tells its stage's health: of each
// attempt to publish a batch, and whether any process consumes the
// stream; and what the consumer tells the health of the stage it feeds.

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stagedserver/seda/stats"
)

// publishOutcome is the outcome of one attempt to publish a batch, for
// stage.ReportAttempt: the error of the first message to publish again
// that failed for a reason other than a full stream (no PubAck in time,
// the connection down, the server restarting), or nil. A full stream is
// a full queue pushing back, not a failing call.
func publishOutcome(retry []*item) error {
	for _, it := range retry {
		var api *jetstream.APIError
		if errors.As(it.err, &api) && isFull(api) {
			continue
		}
		return fmt.Errorf("publishing to JetStream failed, retrying: %w", it.err)
	}
	return nil
}

// unconsumedAfter is how long a stream may hold envelopes with no process
// taking or acking any before a front shows that nothing consumes it.
// A back that is up keeps a pull request open while it has room, and one
// that is full holds envelopes unacked, so either shows at once; the
// wait only covers the moment between two pulls.
const unconsumedAfter = 30 * time.Second

// unconsumed says why nothing consumes the queue, judged from the
// server's figures last read (ns): envelopes are pending and no process
// has pulled or acked for unconsumedAfter (at now), or the stream holds
// envelopes and its consumer does not exist (no back has ever started).
// It returns "" while the queue is consumed, when it is empty, and while
// the server's figures cannot be read (the publisher's own health shows
// that). since is when a process last took from the queue, or zero.
func unconsumed(ns Stats, now time.Time) (why string, since time.Time) {
	if ns.Error != "" || ns.StreamMsgs == 0 {
		return "", time.Time{}
	}
	if !ns.ConsumerFound {
		return fmt.Sprintf("no process consumes stream %s: its consumer %s does not exist (no back of this stage has started), and %d envelopes wait",
			ns.Stream, ns.Consumer, ns.StreamMsgs), time.Time{}
	}
	idle := now.Sub(ns.LastActive)
	if ns.Pending == 0 || ns.PullsWaiting > 0 || ns.AckPending > 0 || idle < unconsumedAfter {
		return "", time.Time{}
	}
	return fmt.Sprintf("no process consumes stream %s: %d envelopes wait and none was taken for %s (is a back of this stage running?)",
		ns.Stream, ns.Pending, idle.Round(time.Second)), ns.LastActive
}

// deadFailingFor is how long after dead-lettering last failed the stage
// the consumer feeds reads at least degraded. The envelopes whose dead
// letters failed come back after a backoff of up to max_backoff (a
// minute by default), so half of that keeps a lasting failure in view
// between tries while letting the state clear soon once it is over.
const deadFailingFor = 30 * time.Second

// downUnconnected is how long a consumer that wants its connection may
// be without it before the stage it feeds reads down rather than
// degraded; startingFor, how long its start may take to make the streams
// and the durable consumer before the stage reads degraded. A back
// whose NATS was away read ok, running, showing only connected: false.
const (
	downUnconnected = 10 * time.Second
	startingFor     = 5 * time.Second
)

// consumerHealth makes h, the health the engine judged of the stage the
// consumer feeds, worse where the consumer knows of trouble the stage's
// own calls do not show; it never makes it better. ns are the queue's
// figures, read at now. /readyz does not change: the pipeline's
// readiness leaves out the stages behind a queue.
//
// While the consumer wants its connection (it was connected early or
// started, and is not closed) and the connection is not up, the stage
// reads degraded, and down once that has lasted downUnconnected; while
// its start has tried for startingFor to make the streams and its
// durable consumer, degraded. A back whose NATS was away read ok.
//
// While dead-lettering has failed within deadFailingFor (the dead-letter
// stream refuses, its server's store full), the stage reads degraded:
// the envelopes whose events were given up are NAKed and stay in the
// work stream for ever, and nothing else told the operator.
func (q *Queue) consumerHealth(h *stats.Health, ns Stats, now time.Time) {
	q.st.mu.Lock()
	first, last, deadErr := q.st.deadFailFirst, q.st.deadFailLast, q.st.deadFailErr
	want, starting, startErr := q.st.wantSince, q.st.startSince, q.st.startErr
	q.st.mu.Unlock()
	if !want.IsZero() {
		if since, err := q.c.disconnected(now); !since.IsZero() {
			if want.After(since) { // down before this consumer wanted it
				since = want
			}
			why := fmt.Sprintf("not connected to NATS (%s) since %s", q.c.server(), since.Format(time.TimeOnly))
			if err != "" {
				why += "; last error: " + err
			}
			if now.Sub(since) >= downUnconnected {
				h.Worsen(stats.HealthDown, since.Add(downUnconnected), why)
			} else {
				h.Worsen(stats.HealthDegraded, since, why)
			}
		} else if !starting.IsZero() && now.Sub(starting) >= startingFor {
			why := fmt.Sprintf("consumer %s of stream %s not made yet (trying since %s)",
				consumerName(q.stage), q.cfg.Stream, starting.Format(time.TimeOnly))
			if startErr != "" {
				why += "; last error: " + startErr
			}
			h.Worsen(stats.HealthDegraded, starting, why)
		}
	}
	if !last.IsZero() && now.Sub(last) < deadFailingFor {
		if first.IsZero() { // a dead letter was stored since: the latest failure is the run
			first = last
		}
		why := fmt.Sprintf("dead-lettering to %s fails: %s", deadStream(q.cfg.Stream), deadErr)
		if ns.StreamMsgs > 0 { // else the server's figures predate the envelopes
			why += fmt.Sprintf("; %d envelopes wait in %s", ns.StreamMsgs, q.cfg.Stream)
		}
		h.Worsen(stats.HealthDegraded, first, why)
	}
}
