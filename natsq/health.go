package natsq

// This file holds what the publisher tells its stage's health of each
// attempt to publish a batch.

import (
	"errors"
	"fmt"

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
