package natsq

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

// TestForcedStopAtMaxDeliverNaks: a forced stop (phase two: the stage's
// context is cancelled, and its handler returns context.Canceled, as
// db.postgres does) while an envelope at its max_deliver-th delivery is
// in the stage leaves the envelope in the work stream for redelivery, as
// the consumer's Fate says (FateRedelivered): the stop is not the
// records' failure, so nothing is dead-lettered and nothing acked away.
// (The NAK is a delivery all the same: the envelope's next one is past
// max_deliver; see docs/DESIGN.md.)
func TestForcedStopAtMaxDeliverNaks(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	release := make(chan struct{})
	reached := make(chan struct{})
	var once sync.Once
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		once.Do(func() { close(reached) })
		<-release
		return context.Canceled // what db.postgres returns once its ctx ends
	}}
	// max_deliver 1: the first delivery is the last.
	qc := QueueConfig{Stream: "t_forced", MaxDeliver: 1, AckWait: time.Minute}
	sp := newSplit(t, srv.URL(), qc, stage.Settings{Batch: 8}, s)
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
		return st.Naked+st.Acked+st.DeadLettered > 0
	})
	if fate := (&consumer{q: q}).Fate(context.Canceled); fate != stage.FateRedelivered {
		t.Errorf("Fate(context.Canceled) = %v, want redelivered", fate)
	}
	if st := q.Stats(); st.DeadLettered != 0 || st.Acked != 0 || st.Naked != 3 {
		t.Fatalf("forced stop: %d records dead-lettered, %d acked, %d NAKed; want the 3 NAKed for redelivery",
			st.DeadLettered, st.Acked, st.Naked)
	}
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_forced", 1)
	dead, err := js.Stream(ctx, "t_forced_dead")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := dead.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead-letter stream: %v messages (%v); want none", info.State.Msgs, err)
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
	client := NewClient(Config{URL: srv.URL()}, "test", nil)
	q := client.Queue("store", QueueConfig{Stream: "t_closing"}, 0, 0)
	js, err := client.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer client.release()
	if err := q.ensureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	b := []byte{codec.Version, 1, 1, 'x', 0} // record 1, payload "x", no fields
	if _, err := js.Publish(ctx, subject("t_closing")+".1", b); err != nil {
		t.Fatal(err)
	}
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
	e := &envelope{c: c, msg: msg, data: b, at: []int{1, len(b)}, delivered: 1, streamSeq: 1}
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
