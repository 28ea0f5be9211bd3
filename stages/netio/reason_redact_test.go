package netio_test

// This file tests that a nack's reason sent to the client is redacted.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
)

// A refusal's reason goes to the client in its nack line: a stage's error
// that quotes a DSN is redacted there, as it is in /stats and the logs.
// The password went to any client that could connect.
func TestNackReasonRedacted(t *testing.T) {
	h := stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
		for _, ev := range b {
			ev.Done(errors.New("insert via postgres://app:s3cret@db:5432/x failed"))
		}
		return nil
	})
	r := newRig(t, nil, stage.Settings{Workers: 1}, h)
	c := r.dial(wire.Lines, nil)
	c.Send([]byte("hello"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	nacks := c.Nacks()
	if len(nacks) != 1 || strings.Contains(nacks[0].Reason, "s3cret") || !strings.Contains(nacks[0].Reason, "app:xxxxx@db") {
		t.Errorf("nacks %+v: want one, its reason with the password redacted", nacks)
	}
}
