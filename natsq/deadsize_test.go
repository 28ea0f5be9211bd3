package natsq

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// streamMsgs returns how many messages the stream holds (-1: unknown).
func streamMsgs(t *testing.T, url, name string) int {
	t.Helper()
	js := natstest.JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return -1
	}
	info, err := st.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// A dead letter fits max_payload. A foreign message near the limit on the
// work subject is dead-lettered whole with its headers added, which passed
// the limit: nats.go refused it at every try, and the message came back
// for ever (21 failed tries in 4 s, never dead-lettered). Its data is now
// cut to fit, and the dead letter says how long it was.
func TestDeadLetterOfAMessageNearMaxPayload(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}}
	newSplit(t, srv.URL(), QueueConfig{Stream: "t_big", Backoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, stage.Settings{Batch: 8}, s)
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	mp := int(js.Conn().MaxPayload())
	if _, err := js.Publish(ctx, subject("t_big"), make([]byte, mp-60)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the message dead-lettered and gone from the work stream", func() bool {
		return streamMsgs(t, srv.URL(), "t_big_dead") == 1 && streamMsgs(t, srv.URL(), "t_big") == 0
	})
	ds, err := js.Stream(ctx, "t_big_dead")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ds.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(codec.HdrTruncated); got != strconv.Itoa(mp-60) || len(m.Data) >= mp-60 {
		t.Errorf("dead letter of %d bytes with %s %q; want it cut, and its length before given", len(m.Data), codec.HdrTruncated, got)
	}
}

// A record near the largest an envelope carries, refused for good with a
// reason quoting a long value: its reason is cut to fit, and it is
// dead-lettered as refused with that reason, not NAKed until max_deliver.
func TestDeadLetterWithALongReason(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	long := "invalid input syntax for type integer: \"" + strings.Repeat("9", 5000) + "\""
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New(long), stage.ErrDatabase)
	}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_bigr", Backoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, stage.Settings{Batch: 8}, s)
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	mp := int(js.Conn().MaxPayload())
	a := newAcks(1)
	out := sp.src.NewEmitter()
	ev := sp.src.NewEvent(make([]byte, mp-4096-32), 1, stage.Origin{To: a})
	if err := out.Emit(ctx, ev); err != nil {
		t.Fatal(err)
	}
	out.Flush(ctx)
	if errs := a.wait(t); errs[1] != nil {
		t.Fatalf("publish: %v", errs[1])
	}
	poll.Until(t, "the record dead-lettered and gone from the work stream", func() bool {
		return streamMsgs(t, srv.URL(), "t_bigr_dead") == 1 && streamMsgs(t, srv.URL(), "t_bigr") == 0
	})
	ds, err := js.Stream(ctx, "t_bigr_dead")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ds.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c, r := m.Header.Get(codec.HdrClass), m.Header.Get(codec.HdrReason); c != DeadRefused || !strings.HasPrefix(r, "invalid input syntax") || len(r) > maxDeadReason+3 {
		t.Errorf("dead letter of class %q with a reason of %d bytes; want refused, its reason cut to %d", c, len(r), maxDeadReason)
	}
	if n := sp.consQueue.st.naked.Load(); n != 0 {
		t.Errorf("the envelope was NAKed %d times; want it acked once dead-lettered", n)
	}
}

// A dead letter's reason is stored in the stream, where whoever replays
// dead letters reads it: a stage's error that quotes a DSN is redacted
// there, as in the log line that says it was dead-lettered.
func TestDeadLetterReasonRedacted(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New("insert via postgres://app:s3cret@db:5432/x refused"), stage.ErrDatabase)
	}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_redr"}, stage.Settings{Batch: 8}, s)
	a := newAcks(1)
	sp.send(t, 1, 1, a)
	a.wait(t)
	poll.Until(t, "the record dead-lettered", func() bool { return streamMsgs(t, srv.URL(), "t_redr_dead") == 1 })
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ds, err := js.Stream(ctx, "t_redr_dead")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ds.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Header.Get(codec.HdrReason); strings.Contains(r, "s3cret") || !strings.Contains(r, "app:xxxxx@db") {
		t.Errorf("dead letter's reason %q: want the password redacted", r)
	}
}
