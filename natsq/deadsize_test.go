package natsq

// This file tests the size of dead letters and their stream: a dead
// letter fits max_payload, its reason is cut and redacted, the stream has
// a byte limit, and dead-letter logs are rate-limited.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
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
	if c, r := m.Header.Get(codec.HdrClass), m.Header.Get(codec.HdrReason); c != DeadRefused || !strings.HasPrefix(r, `stage "store": invalid input syntax`) || len(r) > maxDeadReason+3 {
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

// The dead-letter stream has a byte limit, dead_max_bytes (1GiB unless
// set), with discard old: it had none, so a client sending bad records
// could fill the server's disk with dead letters, each taking many times
// the record's bytes, for a week. A stream made before the key existed
// gets the limit when a process starts, and past it the oldest dead
// letters make room for the newest.
func TestDeadStreamHasAByteLimit(t *testing.T) {
	var c stage.Config
	c.Set("stream", "x")
	if got := QueueConfigFrom(c).DeadMaxBytes; got != 1<<30 {
		t.Errorf("dead_max_bytes unset reads %d, want 1GiB", got)
	}

	// A server taking messages of 4KiB at most, so that a limit of 8KiB
	// holds a dead letter of any size (see TestDeadMaxBytesBelowADeadLetter).
	srv := natstest.Start(t, natstest.Options{MaxPayload: 4 << 10})
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// STREAM_dead as an earlier version made it: no byte limit.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        "t_dmb_dead",
		Description: `seda: dead letters of stage "store" (stream t_dmb)`,
		Subjects:    []string{subject("t_dmb_dead")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      time.Hour,
		Duplicates:  time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	const limit = 8 << 10
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New("bad record"), stage.ErrInvalid)
	}}
	qc := QueueConfig{Stream: "t_dmb", DeadMaxAge: time.Hour, Duplicates: time.Minute, DeadMaxBytes: limit}
	sp := newSplit(t, srv.URL(), qc, stage.Settings{Batch: 8}, s)
	ds, err := js.Stream(ctx, "t_dmb_dead")
	if err != nil {
		t.Fatal(err)
	}
	info, err := ds.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != limit || info.Config.Discard != jetstream.DiscardOld {
		t.Fatalf("dead-letter stream's max_bytes %d, discard %v; want %d, discard old", info.Config.MaxBytes, info.Config.Discard, limit)
	}
	const n = 200
	a := newAcks(n)
	sp.send(t, 1, n, a)
	a.wait(t)
	poll.Until(t, "every record dead-lettered", func() bool {
		return sp.consQueue.Stats().DeadLettered == n && streamMsgs(t, srv.URL(), "t_dmb") == 0
	})
	if info, err = ds.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > limit || info.State.Msgs == 0 || info.State.Msgs >= n {
		t.Fatalf("dead-letter stream holds %d messages, %d bytes; want some, at most %d bytes", info.State.Msgs, info.State.Bytes, limit)
	}
	// The oldest dead letters made room; the newest was stored last and kept.
	if info.State.FirstSeq <= 1 || info.State.LastSeq != n {
		t.Errorf("dead-letter stream holds sequences %d to %d; want the oldest dropped and the last of %d kept", info.State.FirstSeq, info.State.LastSeq, n)
	}
}

// A dead_max_bytes below the largest dead letter is refused at start,
// naming the stage and the key: dead_max_bytes: 100 made a stream that
// dropped each dead letter as it stored it, and nothing said so. The
// largest dead letter is the server's max_payload with the room its
// subject takes, so a limit of that much is taken.
func TestDeadMaxBytesBelowADeadLetter(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	cfg := Config{URL: srv.URL()}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	mp := natstest.JetStream(t, srv.URL()).Conn().MaxPayload()
	start := func(stream string, limit int64) (consErr, pubErr error) {
		qc := QueueConfig{Stream: stream, DeadMaxBytes: limit}
		_, cons := engine.NewSourceStage(stage.Settings{Name: "store"}, NewClient(cfg, "test", nil).Queue("store", qc, port.Block, 64).Consumer(), nil)
		if consErr = cons.Start(ctx); consErr == nil {
			cons.Abort()
			cons.Close()
		}
		q := NewClient(cfg, "test", nil).Queue("store", qc, port.Block, 64)
		_, pub := engine.NewHandlerStage(stage.Settings{Name: "store"}, q.Publisher(), nil)
		pubErr = pub.Start(ctx)
		pub.CloseQueue()
		pub.Wait()
		pub.Close()
		q.Wait()
		return consErr, pubErr
	}
	for _, limit := range []int64{100, mp} {
		consErr, pubErr := start("t_dmb_small", limit)
		for side, err := range map[string]error{"consumer": consErr, "publisher": pubErr} {
			var fe *stage.FieldError
			if err == nil || !errors.As(err, &fe) || fe.Field != "queue.dead_max_bytes" || !strings.Contains(err.Error(), `stage "store"`) {
				t.Errorf("dead_max_bytes %d: %s's Start: %v; want it refused, naming the stage and queue.dead_max_bytes", limit, side, err)
			}
		}
	}
	if n := streamMsgs(t, srv.URL(), "t_dmb_small_dead"); n != -1 {
		t.Errorf("the dead-letter stream was made with a limit refused (it holds %d)", n)
	}
	for _, limit := range []int64{0, mp + deadStoreRoom} {
		if consErr, pubErr := start(fmt.Sprintf("t_dmb_ok%d", limit), limit); consErr != nil || pubErr != nil {
			t.Errorf("dead_max_bytes %d: consumer's Start: %v, publisher's: %v; want both started", limit, consErr, pubErr)
		}
	}
	// The least limit taken holds the largest dead letter: a message of
	// max_payload on the work subject, dead-lettered whole.
	newSplit(t, srv.URL(), QueueConfig{Stream: "t_dmb_least", DeadMaxBytes: mp + deadStoreRoom}, stage.Settings{Batch: 8}, &sink{seen: map[string]int{}})
	if _, err := natstest.JetStream(t, srv.URL()).Publish(ctx, subject("t_dmb_least"), make([]byte, mp-60)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the message dead-lettered and kept", func() bool {
		return streamMsgs(t, srv.URL(), "t_dmb_least_dead") == 1 && streamMsgs(t, srv.URL(), "t_dmb_least") == 0
	})
}

// The dead-letter warning is logged at most once a second per stage:
// it was one line per event, so a client sending bad records wrote 30 MB
// of log for 100,000 of them. /stats still counts every one.
func TestDeadLetterLogIsLimited(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := Config{URL: srv.URL()}
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New("bad record"), stage.ErrInvalid)
	}}
	sp := newSplitClients(t, NewClient(cfg, "test", nil), NewClient(cfg, "test", zap.New(core)),
		QueueConfig{Stream: "t_deadlog"}, stage.Settings{Batch: 8}, s, nil)
	const n = 200
	a := newAcks(n)
	sp.send(t, 1, n, a)
	a.wait(t)
	poll.Until(t, "every record dead-lettered", func() bool { return sp.consQueue.Stats().DeadLettered == n })
	lines := logs.FilterMessage("nats: event dead-lettered").All()
	if len(lines) == 0 || len(lines) > n/4 {
		t.Fatalf("%d dead-letter warnings for %d dead letters; want at least one, and far fewer than one each", len(lines), n)
	}
	told := 0
	for _, l := range lines {
		told++
		if skipped, ok := l.ContextMap()["not_logged"].(uint64); ok {
			told += int(skipped)
		}
	}
	if told > n {
		t.Errorf("the warnings account for %d dead letters; %d were made", told, n)
	}
}

// The warning that dead-lettering failed is logged at most once a second
// per stage, as the dead-letter warning is: with the dead-letter stream
// away, each delivery of an envelope holding a dead letter logged a line.
// Held back (the limiter's second made endless), N failures log nothing;
// once the second has passed, the next line says how many were not
// logged.
func TestDeadLetteringFailedLogIsLimited(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := Config{URL: srv.URL()}
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New("bad record"), stage.ErrInvalid)
	}}
	sp := newSplitClients(t, NewClient(cfg, "test", nil), NewClient(cfg, "test", zap.New(core)),
		QueueConfig{Stream: "t_deadfail", EnvelopeEvents: 1, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, stage.Settings{Batch: 8}, s, nil)
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// A dead-letter stream that takes no message refuses each dead
	// letter at once. (Deleted, each try took half a second, nats.go
	// retrying when no stream answered.)
	ds, err := js.Stream(ctx, "t_deadfail_dead")
	if err != nil {
		t.Fatal(err)
	}
	dc := ds.CachedInfo().Config
	dc.MaxMsgSize = 1
	if _, err := js.UpdateStream(ctx, dc); err != nil {
		t.Fatal(err)
	}
	q := sp.consQueue
	failures := func() uint64 { return q.Stats().DeadErrors }
	lines := func() []observer.LoggedEntry {
		return logs.FilterMessage("nats: dead-lettering failed; the envelope comes back later").All()
	}
	// The limiter's second made endless: every failure is held back.
	q.deadFailLog.next.Store(math.MaxInt64)
	// An envelope each, so that the failures come from many at once.
	const n = 20
	a := newAcks(n)
	sp.send(t, 1, n, a)
	a.wait(t)
	// Wait on what the limiter held back, not on the failures counted:
	// a failure is counted before it asks the limiter, so the last one
	// counted may not have asked yet, and would be the line let through
	// below, saying one fewer was held back.
	poll.Until(t, "failures held back", func() bool { return q.deadFailLog.skipped.Load() >= n })
	if got := len(lines()); got != 0 {
		t.Fatalf("%d warnings for %d failures; want none while the limiter holds them back", got, failures())
	}
	q.deadFailLog.next.Store(0) // the second has passed
	poll.Until(t, "the next warning", func() bool { return len(lines()) > 0 })
	l := lines()[0]
	skipped, _ := l.ContextMap()["not_logged"].(uint64)
	if skipped < n {
		t.Errorf("the warning after %d failures held back says %d were not logged", n, skipped)
	}
	told := uint64(0)
	for _, l := range lines() {
		told++
		if skipped, ok := l.ContextMap()["not_logged"].(uint64); ok {
			told += skipped
		}
	}
	if f := failures(); told > f {
		t.Errorf("the warnings account for %d failures; %d were counted", told, f)
	}
}

// logLimit lets the first line through, holds back the next ones within
// the second, and has the next line it lets through count them.
func TestLogLimit(t *testing.T) {
	var l logLimit
	if ok, skipped := l.allow(); !ok || skipped != 0 {
		t.Fatalf("first line: %v, %d not logged; want it logged, none held back", ok, skipped)
	}
	for range 3 {
		if ok, _ := l.allow(); ok {
			t.Fatal("a second line in the same second was let through")
		}
	}
	l.next.Store(0) // the second has passed
	if ok, skipped := l.allow(); !ok || skipped != 3 {
		t.Fatalf("line after the second: %v, %d not logged; want it logged, saying 3 were not", ok, skipped)
	}
	l.next.Store(0)
	if _, skipped := l.allow(); skipped != 0 {
		t.Fatalf("%d not logged after a line that said so; want 0", skipped)
	}
}
