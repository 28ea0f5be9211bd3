package natsq

// This file holds what the publisher tells its stage's health: of each
// attempt to publish a batch, and whether any process consumes the
// stream.

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
