package natsq

// This file tests what a stop does to envelopes in hand: a forced stop
// requeues or NAKs them, a closing consumer publishes no dead letter, a
// requeued copy's dead letters are stored once, and Abort ends a stalled
// publish.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// cutByStop publishes an envelope of 3 records to a queue of qc, has a
// forced stop (phase two: the stage's context is cancelled, and its
// handler returns context.Canceled, as db.postgres does) cut short its
// first delivery in the stage, waits until the consumer has settled it,
// and stops the split. It returns the consuming side's queue.
func cutByStop(t *testing.T, url string, qc QueueConfig) *Queue {
	t.Helper()
	return cutByStopFailing(t, url, qc, "")
}

// cutByStopFailing is cutByStop where the record failing, when not "",
// fails for a reason of its own (not the stop's) before the stop.
func cutByStopFailing(t *testing.T, url string, qc QueueConfig, failing string) *Queue {
	t.Helper()
	release := make(chan struct{})
	reached := make(chan struct{})
	var once sync.Once
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		if failing != "" && string(ev.Payload) == failing {
			return errors.New("a hiccup of the database")
		}
		once.Do(func() { close(reached) })
		<-release
		return context.Canceled // what db.postgres returns once its ctx ends
	}}
	sp := newSplit(t, url, qc, stage.Settings{Batch: 8}, s)
	a := newAcks(3)
	sp.send(t, 1, 3, a)
	a.wait(t) // acked to the client: in the stream
	<-reached
	// The pipeline's stop: phase one stops pulling (StopInput) and waits
	// for the stage, which does not finish in time; phase two cancels
	// the stage's context.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sp.cons.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	sp.store.Abort()
	close(release)
	q := sp.consQueue
	poll.Until(t, "the envelope settled", func() bool {
		st := q.Stats()
		return st.Naked+st.Acked+st.DeadLettered+st.Requeued > 0
	})
	sp.stop(t)
	return q
}

// deadMsgs is how many messages stream's dead-letter stream holds.
func deadMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dead, err := js.Stream(ctx, deadStream(stream))
	if err != nil {
		t.Fatal(err)
	}
	info, err := dead.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestForcedStopAtMaxDeliverRequeues: a forced stop while an envelope at
// its max_deliver-th delivery is in the stage puts the envelope back into
// the work stream as a fresh message, as the consumer's Fate says
// (FateRedelivered): the stop is not the records' failure. A NAK would
// count as a delivery, and the envelope's next delivery, past
// max_deliver, would dead-letter its records unhandled; the copy's
// deliveries count from one, so a consumer started again stores them.
// The copy has a Nats-Msg-Id of its own: the original's, within the
// duplicate window, would have the stream drop it as a retry.
func TestForcedStopAtMaxDeliverRequeues(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	// max_deliver 1: the first delivery is the last.
	qc := QueueConfig{Stream: "t_forced", MaxDeliver: 1, AckWait: time.Minute}
	q := cutByStop(t, srv.URL(), qc)
	js := natstest.JetStream(t, srv.URL())

	// The consumer started again (a restarted back) stores the records.
	s := &sink{seen: map[string]int{}}
	sp := newSplit(t, srv.URL(), qc, stage.Settings{Batch: 8}, s)
	poll.Until(t, "the records stored or dead-lettered", func() bool {
		return s.count() >= 3 || sp.consQueue.Stats().DeadLettered > 0
	})
	if n, st := s.count(), sp.consQueue.Stats(); n != 3 || st.DeadLettered != 0 {
		t.Fatalf("after a restart: %d of 3 records stored, %d dead-lettered (%+v); want all stored", n, st.DeadLettered, st.Dead)
	}
	if n := deadMsgs(t, js, "t_forced"); n != 0 {
		t.Errorf("dead-letter stream: %d messages; want none", n)
	}
	if st := q.Stats(); st.Requeued != 1 || st.DeadLettered != 0 || st.Acked != 0 || st.Naked != 0 {
		t.Errorf("forced stop: %d envelopes requeued, %d records dead-lettered, %d acked, %d NAKed; want the envelope requeued",
			st.Requeued, st.DeadLettered, st.Acked, st.Naked)
	}
	st, metric := q.Stats(), -1.0
	for _, s := range series(&st) {
		if s.Name == "pipeline_stage_nats_envelopes_requeued_total" {
			metric = s.Value
		}
	}
	if metric != 1 {
		t.Errorf("/metrics pipeline_stage_nats_envelopes_requeued_total = %v (-1: no such series), want 1", metric)
	}
	if fate := (&consumer{q: q}).Fate(context.Canceled); fate != stage.FateRedelivered {
		t.Errorf("Fate(context.Canceled) = %v, want redelivered", fate)
	}
	// The copy, stored as sequence 2, was acked in its turn.
	sp.stop(t)
	waitStream(t, js, "t_forced", 0)
	info, err := js.Stream(context.Background(), "t_forced")
	if err != nil {
		t.Fatal(err)
	}
	if last := info.CachedInfo().State.LastSeq; last != 2 {
		t.Errorf("work stream's last sequence %d; want 2 (the original and its copy)", last)
	}
}

// TestForcedStopBeforeMaxDeliverNaks: an envelope the stop cuts short
// before its max_deliver-th delivery is NAKed, as before: its next
// delivery is still within max_deliver.
func TestForcedStopBeforeMaxDeliverNaks(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	qc := QueueConfig{Stream: "t_forced_nak", MaxDeliver: 2, AckWait: time.Minute}
	q := cutByStop(t, srv.URL(), qc)
	if st := q.Stats(); st.Naked != 3 || st.Requeued != 0 || st.DeadLettered != 0 || st.Acked != 0 {
		t.Fatalf("forced stop at delivery 1 of 2: %d NAKed, %d envelopes requeued, %d dead-lettered, %d acked; want the 3 NAKed",
			st.Naked, st.Requeued, st.DeadLettered, st.Acked)
	}
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_forced_nak", 1)
	if n := deadMsgs(t, js, "t_forced_nak"); n != 0 {
		t.Errorf("dead-letter stream: %d messages; want none", n)
	}
}

// TestForcedStopRequeueRefusedNaks: when the stream refuses the copy (at
// max_msgs, discard new: the original still takes its place until the
// copy is stored), the envelope is NAKed as before, not acked away.
func TestForcedStopRequeueRefusedNaks(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	qc := QueueConfig{Stream: "t_forced_full", MaxDeliver: 1, MaxMsgs: 1, AckWait: time.Minute}
	q := cutByStop(t, srv.URL(), qc)
	if st := q.Stats(); st.Naked != 3 || st.Requeued != 0 || st.DeadLettered != 0 || st.Acked != 0 {
		t.Fatalf("forced stop, the copy refused: %d NAKed, %d envelopes requeued, %d dead-lettered, %d acked; want the 3 NAKed",
			st.Naked, st.Requeued, st.DeadLettered, st.Acked)
	}
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_forced_full", 1)
	if m := getMsg(t, js, "t_forced_full", 1); m == nil {
		t.Error("the original envelope is gone from the work stream")
	}
}

// TestClosingPublishesNoDeadLetter: once the consumer is closing, an
// envelope given up is NAKed (deadLetters), so publishDead stores none of
// its dead letters: one stored would stand beside the record's next
// delivery.
func TestClosingPublishesNoDeadLetter(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	q, js := streamWithOne(t, srv.URL(), "t_closing")
	b := oneEnvelope
	cons, err := js.CreateOrUpdateConsumer(ctx, "t_closing", jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next()
	if err != nil {
		t.Fatal(err)
	}
	c := &consumer{q: q, js: js}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cancel() // Close
	e := &envelope{c: c, msg: msg, data: b, at: []int{1, len(b)}, delivered: 1, streamSeq: 1, firstSeq: 1}
	err = c.publishDead(e, []deadEvent{{i: 0, class: DeadRefused, reason: "bad"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("publishDead while closing: %v, want context.Canceled", err)
	}
	dead, err := js.Stream(ctx, "t_closing_dead")
	if err != nil {
		t.Fatal(err)
	}
	// A dead letter published is stored before its PubAck comes; the
	// PubAck of a message sent after it says the server has handled it.
	if _, err := js.Publish(ctx, subject("t_closing_dead"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if info, err := dead.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("dead-letter stream: %v messages (%v); want only the marker", info.State.Msgs, err)
	}
}

// TestAbortEndsAStalledPublish: with pubAcksInFlight PubAcks out and none
// coming back (the connection up, the subject taken by a subscriber that
// answers none), a publish waits for room. nats.go's wait does not watch
// a context; the publisher's must, so that phase two of a stop (Abort)
// ends the worker at once rather than after pubAckWait, set here past
// poll.Limit so that a wait that ignores Abort fails the test.
func TestAbortEndsAStalledPublish(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	front.pubAckWait = poll.Limit + 10*time.Second
	q := front.Queue("store", QueueConfig{Stream: "t_stall", EnvelopeEvents: 1}, port.Block, 1024)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	_, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1, Batch: 512}, q.Publisher(), nil)
	srcLife.Connect(pub.Stage(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	js := natstest.JetStream(t, srv.URL())
	if err := js.DeleteStream(ctx, "t_stall"); err != nil {
		t.Fatal(err)
	}
	sub, err := js.Conn().Subscribe(subject("t_stall")+".>", func(*nats.Msg) {}) // takes them, answers none
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// One envelope an event: the batch's 257th publish waits for room.
	const n = pubAcksInFlight + 1
	a := newAcks(n)
	out := src.NewEmitter()
	for i := 1; i <= n; i++ {
		if err := out.Emit(ctx, src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: a})); err != nil {
			t.Fatal(err)
		}
	}
	out.Flush(ctx)
	poll.Until(t, "pubAcksInFlight PubAcks out", func() bool {
		q.c.mu.Lock()
		defer q.c.mu.Unlock()
		return q.c.js.PublishAsyncPending() == pubAcksInFlight
	})
	pub.Abort() // phase two
	done := make(chan struct{})
	go func() { pub.Wait(); close(done) }()
	defer func() { <-done; pub.CloseQueue(); pub.Close(); q.Wait() }()
	poll.Until(t, "the worker to return once its context ended", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	// Every event is finished, the one that waited for room with the
	// stop's error: it is not in the stream.
	errs := a.wait(t)
	if err := errs[n]; !errors.Is(err, context.Canceled) {
		t.Errorf("the event whose publish waited for room: %v, want context.Canceled", err)
	}
}

// TestRequeuedDeadLetterStoredOnce: a requeued copy's dead letters key on
// the sequence its envelope was first stored under (Seda-First-Seq), so
// that an event dead-lettered from the original and again from its copy
// is stored once in the dead-letter stream.
func TestRequeuedDeadLetterStoredOnce(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	q, js := streamWithOne(t, srv.URL(), "t_firstseq")
	b := oneEnvelope
	c := &consumer{q: q, js: js}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "t_firstseq", jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next()
	if err != nil {
		t.Fatal(err)
	}
	// The original (sequence 1) and its copy (sequence 7, first stored as 1).
	for _, seq := range []uint64{1, 7} {
		e := &envelope{c: c, msg: msg, data: b, at: []int{1, len(b)}, delivered: 1, streamSeq: seq, firstSeq: 1}
		if err := c.publishDead(e, []deadEvent{{i: 0, class: DeadRefused, reason: "bad"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := deadMsgs(t, js, "t_firstseq"); n != 1 {
		t.Errorf("dead-letter stream: %d messages; want the event's one", n)
	}
}

// TestForcedStopWithDeadEventNaks: at an envelope's max_deliver-th
// delivery one event fails for a reason of its own, and is dead-lettered
// (max_deliver); the stop cuts the others short. The envelope is NAKed,
// not requeued: a copy held the dead-lettered event too, and a restarted
// back stored it, so that STREAM_dead listed a record that was stored.
func TestForcedStopWithDeadEventNaks(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	qc := QueueConfig{Stream: "t_deadcut", MaxDeliver: 1, AckWait: time.Minute}
	q := cutByStopFailing(t, srv.URL(), qc, `{"id":1}`)
	if st := q.Stats(); st.Requeued != 0 || st.Naked != 3 || st.Dead.MaxDeliver != 1 {
		t.Fatalf("first back: %d requeued, %d NAKed, dead %+v; want the envelope NAKed after event 1 was dead-lettered", st.Requeued, st.Naked, st.Dead)
	}
	// The next back finds it past max_deliver: each event is
	// dead-lettered, event 1 once (its dead letter's id is the same).
	s2 := &sink{seen: map[string]int{}}
	newSplit(t, srv.URL(), qc, stage.Settings{Batch: 8}, s2)
	js := natstest.JetStream(t, srv.URL())
	poll.Until(t, "the three events dead-lettered", func() bool { return deadMsgs(t, js, "t_deadcut") == 3 })
	if s2.count() != 0 {
		t.Errorf("the restarted back stored %v; want nothing stored of an envelope past max_deliver", s2.seen)
	}
}

// oneEnvelope is an envelope of one record: payload "x", no fields.
var oneEnvelope = []byte{codec.Version, 1, 1, 'x', 0}

// streamWithOne makes a queue of stream on a client of its own, opens the
// client's connection (released when the test ends), makes the stream and
// publishes oneEnvelope to it.
func streamWithOne(t *testing.T, url, stream string) (*Queue, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	client := NewClient(Config{URL: url}, "test", nil)
	q := client.Queue("store", QueueConfig{Stream: stream}, 0, 0)
	js, err := client.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.release)
	if err := q.ensureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject(stream)+".1", oneEnvelope); err != nil {
		t.Fatal(err)
	}
	return q, js
}
