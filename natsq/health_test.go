package natsq

// This file tests what a queue's stages show while NATS is away or not
// ready: health, Stats and figures, hints, forgotten PubAcks, and
// unconsumed streams.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// While the NATS server is away the publisher's retries make its stage
// down, with the last error; once the server is back every event is
// published and the stage is no longer down.
func TestPublisherHealthDuringOutage(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	q := front.Queue("store", QueueConfig{Stream: "t_health"}, port.Block, 64)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	pubStage, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1}, q.Publisher(), nil)
	srcLife.Connect(pubStage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	a := newAcks(5)
	out := src.NewEmitter()
	for i := 1; i <= 5; i++ {
		out.Emit(ctx, src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: a}))
	}
	out.Flush(ctx)
	var h stats.Health
	poll.Until(t, "the publisher's stage down", func() bool {
		h = pubStage.Stats().Health
		return h.State == stats.HealthDown
	})
	if !strings.Contains(h.Error, "publishing to JetStream failed") {
		t.Fatalf("down with error %q, want the publish's", h.Error)
	}
	srv.Restart()
	for seq, err := range a.wait(t) {
		if err != nil {
			t.Errorf("event %d: %v", seq, err)
		}
	}
	poll.Until(t, "the publisher's stage up", func() bool { return pubStage.Stats().Health.State != stats.HealthDown })
	pub.CloseQueue()
	pub.Wait()
	pub.Close()
	q.Wait()
}

// A PubAck that never comes while the connection stays up (here the
// stream is gone and a plain subscriber takes its subject) is forgotten
// after pubAckForget: nats.go held each one until a reconnect, and once
// pubAcksInFlight were held every publish stalled.
func TestLostPubAcksAreForgotten(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	front.pubAckWait = 200 * time.Millisecond
	q := front.Queue("store", QueueConfig{Stream: "t_lost"}, port.Block, 64)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	_, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1}, q.Publisher(), nil)
	srcLife.Connect(pub.Stage(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	js := natstest.JetStream(t, srv.URL())
	nc := js.Conn()
	if err := js.DeleteStream(ctx, "t_lost"); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.Subscribe(subject("t_lost")+".>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	a := newAcks(1)
	out := src.NewEmitter()
	out.Emit(ctx, src.NewEvent([]byte("x"), 1, stage.Origin{To: a}))
	out.Flush(ctx)
	poll.Until(t, "three publishes without a PubAck", func() bool { return q.st.publishRetries.Load() >= 3 })
	// Held, each would stay pending: the count only grew.
	poll.Until(t, "the lost PubAcks forgotten", func() bool {
		q.c.mu.Lock()
		defer q.c.mu.Unlock()
		return q.c.js != nil && q.c.js.PublishAsyncPending() == 0
	})
	cancel()
	pub.Abort()
	pub.CloseQueue()
	pub.Wait()
	pub.Close()
	q.Wait()
}

// While a queue connects (its server is away at start, so open retries),
// its Stats answer at once, saying it is not connected: /stats is how an
// operator sees why a stage does not start.
func TestStatsAnswerWhileConnecting(t *testing.T) {
	// Port 1: nobody listens there (a stopped test server's port could be
	// taken by another package's server meanwhile).
	core, logs := observer.New(zapcore.WarnLevel)
	c := NewClient(Config{URL: "nats://127.0.0.1:1"}, "test", zap.New(core))
	q := c.Queue("store", QueueConfig{Stream: "t_connecting"}, port.Block, 64)
	pub := q.Publisher().(*publisher)
	ctx, cancel := context.WithCancel(context.Background())
	var startErr error
	started := make(chan struct{})
	go func() { startErr = pub.Start(ctx); close(started) }()
	defer func() { cancel(); <-started }()
	poll.Until(t, "a failed connect", func() bool {
		return logs.FilterMessageSnippet("cannot connect").Len() > 0
	})
	got := make(chan Stats, 1)
	go func() { got <- q.Stats() }()
	select {
	case ns := <-got:
		if ns.Connected || ns.Publishing {
			t.Errorf("connected %v, publishing %v while the server is away", ns.Connected, ns.Publishing)
		}
	case <-started:
		t.Fatalf("Start returned (%v) before Stats", startErr)
	case <-time.After(wait):
		t.Fatalf("Stats did not answer in %s while the queue connects", wait)
	}
	cancel()
	<-started
	if !errors.Is(startErr, context.Canceled) {
		t.Fatalf("Start after cancel: %v, want context.Canceled", startErr)
	}
}

// A server without JetStream answers no stream request; the retries say
// what to look at, where they only repeated "no responders".
func TestNoJetStreamIsHinted(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(wait) {
		t.Fatal("the server did not start")
	}
	core, logs := observer.New(zapcore.WarnLevel)
	c := NewClient(Config{URL: srv.ClientURL()}, "test", zap.New(core))
	q := c.Queue("store", QueueConfig{Stream: "t_nojs"}, port.Block, 64)
	pub := q.Publisher().(*publisher)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- pub.Start(ctx) }()
	poll.Until(t, "a retry with the hint", func() bool {
		for _, e := range logs.FilterMessageSnippet("failed; retrying").All() {
			if h, _ := e.ContextMap()["hint"].(string); strings.Contains(h, "nats-server -js") {
				return true
			}
		}
		return false
	})
	cancel()
	err = <-started
	pub.Close() // as the pipeline closes a stage whose start failed
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start after cancel: %v, want context.Canceled", err)
	}
}

// While the server does not answer, a stage's figures are the last it
// gave, getting older, with the error: they were zeroed, so the stage's
// depth read 0 and its consumer not found while its backlog waited in
// the stream. Once the server answers again they are fresh.
func TestFiguresKeptWhileServerAway(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	q := front.Queue("store", QueueConfig{Stream: "t_away"}, port.Block, 64)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	pubStage, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1}, q.Publisher(), nil)
	srcLife.Connect(pubStage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 7
	a := newAcks(n)
	out := src.NewEmitter()
	for i := 1; i <= n; i++ {
		out.Emit(ctx, src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: a}))
	}
	out.Flush(ctx)
	a.wait(t)
	// A consumer that takes nothing, so that the server has its figures.
	js := natstest.JetStream(t, srv.URL())
	if _, err := js.CreateOrUpdateConsumer(ctx, "t_away", jetstream.ConsumerConfig{Durable: consumerName("store"), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	fill := func() (stats.Stage, Stats) {
		st := stats.Stage{Queue: stats.Queue{Depth: 0, Capacity: 64}}
		q.Fill(&st)
		ns, _ := StatsOf(st)
		return st, ns
	}
	var before Stats
	var beforeSt stats.Stage
	poll.Until(t, "the stream's figures", func() bool {
		beforeSt, before = fill()
		return before.ConsumerFound && beforeSt.Queue.Depth == n && before.Error == ""
	})

	srv.Stop()
	var st stats.Stage
	var ns Stats
	poll.Until(t, "a read that fails", func() bool {
		st, ns = fill()
		return ns.Error != ""
	})
	if st.Queue.Depth != n || st.Queue.Capacity != beforeSt.Queue.Capacity {
		t.Errorf("depth %d/%d while the server is away, want the last read %d/%d", st.Queue.Depth, st.Queue.Capacity, n, beforeSt.Queue.Capacity)
	}
	if !ns.ConsumerFound || ns.StreamMsgs != before.StreamMsgs || ns.Pending != before.Pending || ns.MaxMsgs != before.MaxMsgs {
		t.Errorf("figures %+v while the server is away, want the last read %+v", ns, before)
	}
	// The failed read was asked for at least infoEvery after the last
	// answer, so the figures it kept are at least that old.
	if ns.InfoAgeS < infoEvery.Seconds() {
		t.Errorf("info_age_s %.3f after a failed read, want the last answer's age (at least %s)", ns.InfoAgeS, infoEvery)
	}

	srv.Restart()
	poll.Until(t, "fresh figures", func() bool {
		st, ns = fill()
		return ns.Error == "" && ns.InfoAgeS < infoEvery.Seconds()
	})
	if st.Queue.Depth != n || !ns.ConsumerFound {
		t.Errorf("depth %d, consumer found %v once the server is back, want %d, true", st.Queue.Depth, ns.ConsumerFound, n)
	}
	pub.CloseQueue()
	pub.Wait()
	pub.Close()
	q.Wait()
}

// unconsumed tells of a stream no process takes from: its consumer
// missing, or envelopes pending with no pull open, none in a process's
// hands and none taken for unconsumedAfter; and of nothing while a back
// pulls, holds envelopes, took one lately, the stream is empty, or the
// server's figures are old.
func TestUnconsumed(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	old := now.Add(-unconsumedAfter - time.Second)
	idle := Stats{Stream: "s", Consumer: "c", StreamMsgs: 5, Pending: 5, ConsumerFound: true, LastActive: old}
	for _, tc := range []struct {
		name  string
		edit  func(*Stats)
		want  string // "" or a part of why
		since time.Time
	}{
		{"no back pulls for long", func(*Stats) {}, "5 envelopes wait and none was taken for 31s", old},
		{"no consumer yet", func(ns *Stats) { ns.ConsumerFound, ns.LastActive = false, time.Time{} }, "its consumer c does not exist", time.Time{}},
		{"a back pulls", func(ns *Stats) { ns.PullsWaiting = 1 }, "", time.Time{}},
		{"a back holds envelopes", func(ns *Stats) { ns.AckPending = 2 }, "", time.Time{}},
		{"taken lately", func(ns *Stats) { ns.LastActive = now.Add(-time.Second) }, "", time.Time{}},
		{"empty stream", func(ns *Stats) { ns.StreamMsgs, ns.Pending = 0, 0 }, "", time.Time{}},
		{"empty stream, no consumer", func(ns *Stats) { ns.StreamMsgs, ns.Pending, ns.ConsumerFound = 0, 0, false }, "", time.Time{}},
		{"server away", func(ns *Stats) { ns.Error = "timeout" }, "", time.Time{}},
	} {
		ns := idle
		tc.edit(&ns)
		why, since := unconsumed(ns, now)
		if (why == "") != (tc.want == "") || !strings.Contains(why, tc.want) || !since.Equal(tc.since) {
			t.Errorf("%s: %q since %v, want %q since %v", tc.name, why, since, tc.want, tc.since)
		}
	}
}

// While dead-lettering fails (the dead-letter stream refuses, as when the
// server's store is full) the stage the consumer feeds reads degraded,
// saying why: its envelopes were NAKed for ever, and it read ok. Once
// the failures are deadFailingFor old, the consumer no longer makes it
// worse; and it never makes a worse health better.
func TestDeadLetteringFailureDegradesTheStage(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		return stage.WithClass(errors.New("bad record"), stage.ErrInvalid)
	}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_dlf", Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		stage.Settings{Batch: 8}, s)
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// The dead-letter stream refuses every dead letter: each is larger
	// than its max_msg_size.
	setMaxMsgSize := func(n int32) {
		t.Helper()
		ds, err := js.Stream(ctx, "t_dlf_dead")
		if err != nil {
			t.Fatal(err)
		}
		cfg := ds.CachedInfo().Config
		cfg.MaxMsgSize = n
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	setMaxMsgSize(16)
	fed := feeder{&consumer{q: sp.consQueue}}
	figures := func() stats.Stage {
		st := sp.store.Stage().Stats() // as pipeline's shown.stats: the engine's health, then the figures
		fed.Figures(&st)
		return st
	}
	if h := figures().Health; h.State != stats.HealthOK {
		t.Fatalf("health %+v before any dead letter; want ok", h)
	}
	a := newAcks(3)
	sp.send(t, 1, 3, a)
	a.wait(t)
	var h stats.Health
	poll.Until(t, "the fed stage degraded by the refused dead letters", func() bool {
		h = figures().Health
		return h.State == stats.HealthDegraded && strings.Contains(h.Error, "envelopes wait in t_dlf")
	})
	if !strings.Contains(h.Error, "dead-lettering to t_dlf_dead fails: ") || !strings.Contains(h.Error, "message size exceeds") || h.Since.IsZero() {
		t.Errorf("degraded with %q since %v; want why dead-lettering fails, and since when", h.Error, h.Since)
	}
	first := h.Since
	ns := Stats{StreamMsgs: 1}
	// Read at deadFailingFor after the latest failure, and just before:
	// at the latest failure the call saw, the same before and after it.
	// (At a second past time.Now(), a failure recorded more than a
	// second after that now, while the test waited to run, read as
	// recent: the envelope comes back every 50 ms.)
	q := sp.consQueue
	lastFailure := func() time.Time {
		q.st.mu.Lock()
		defer q.st.mu.Unlock()
		return q.st.deadFailLast
	}
	var before, later stats.Health
	poll.Until(t, "a reading during which nothing failed", func() bool {
		last := lastFailure()
		before, later = stats.Health{State: stats.HealthOK}, stats.Health{State: stats.HealthOK}
		q.consumerHealth(&before, ns, last.Add(deadFailingFor-time.Millisecond))
		q.consumerHealth(&later, ns, last.Add(deadFailingFor))
		return lastFailure().Equal(last)
	})
	if before.State != stats.HealthDegraded {
		t.Errorf("health %+v just under %s after the last failure; want degraded", before, deadFailingFor)
	}
	if later.State != stats.HealthOK {
		t.Errorf("health %+v %s after the last failure; want ok", later, deadFailingFor)
	}
	down := stats.Health{State: stats.HealthDown, Error: "database away"}
	sp.consQueue.consumerHealth(&down, ns, time.Now())
	if down.State != stats.HealthDown || down.Error != "database away" {
		t.Errorf("a down stage reads %+v; want it left down, with its own why", down)
	}
	// More failures of the same run keep when it began.
	n := sp.consQueue.st.deadErrors.Load()
	poll.Until(t, "another failed try", func() bool { return sp.consQueue.st.deadErrors.Load() > n })
	if h = figures().Health; h.State != stats.HealthDegraded || !h.Since.Equal(first) {
		t.Errorf("health %+v after another failure; want degraded since %v", h, first)
	}

	setMaxMsgSize(-1)
	poll.Until(t, "every record dead-lettered", func() bool { return sp.consQueue.Stats().DeadLettered == 3 })
}

// A back whose server goes away reads degraded, saying since when it is
// not connected, and down once that has lasted downUnconnected; ok again
// once the server is back. It read ok throughout, only the nats object's
// connected: false telling.
func TestConsumerHealthWhileNotConnected(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_unconn"}, stage.Settings{Batch: 8}, &sink{seen: map[string]int{}})
	fed := feeder{&consumer{q: sp.consQueue}}
	figures := func() stats.Stage {
		st := sp.store.Stage().Stats() // as pipeline's shown.stats: the engine's health, then the figures
		fed.Figures(&st)
		return st
	}
	if h := figures().Health; h.State != stats.HealthOK {
		t.Fatalf("health %+v while connected; want ok", h)
	}
	srv.Stop()
	var h stats.Health
	poll.Until(t, "the fed stage degraded while not connected", func() bool {
		h = figures().Health
		return h.State == stats.HealthDegraded
	})
	if want := "not connected to NATS (" + srv.URL() + ") since " + h.Since.Format(time.TimeOnly); !strings.HasPrefix(h.Error, want) {
		t.Errorf("degraded with %q since %v; want %q and since when", h.Error, h.Since, want)
	}
	later := stats.Health{State: stats.HealthOK}
	sp.consQueue.consumerHealth(&later, Stats{}, h.Since.Add(downUnconnected+time.Second))
	// The same outage: its start has not moved (the last error may have
	// come meanwhile).
	want := "not connected to NATS (" + srv.URL() + ") since " + h.Since.Format(time.TimeOnly)
	if later.State != stats.HealthDown || !later.Since.Equal(h.Since.Add(downUnconnected)) || !strings.HasPrefix(later.Error, want) {
		t.Errorf("health %+v once not connected for %s; want down since %v, %q", later, downUnconnected, h.Since.Add(downUnconnected), want)
	}
	srv.Restart()
	poll.Until(t, "the fed stage ok once reconnected", func() bool { return figures().Health.State == stats.HealthOK })
}

// A back started while its server cannot be reached reads degraded
// while it retries, with the last error; one connected to a server that
// cannot make its consumer (no JetStream) reads degraded once its start
// has tried for startingFor.
func TestConsumerHealthWhileStarting(t *testing.T) {
	// Port 1: nobody listens there.
	c := NewClient(Config{URL: "nats://127.0.0.1:1"}, "test", nil)
	q := c.Queue("store", QueueConfig{Stream: "t_startunconn"}, port.Block, 64)
	_, cons := engine.NewSourceStage(stage.Settings{Name: "store"}, q.Consumer(), nil)
	_, store := engine.NewHandlerStage(stage.Settings{Name: "store"}, &sink{seen: map[string]int{}}, nil)
	cons.Connect(store.Stage(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- cons.Start(ctx) }()
	fed := feeder{&consumer{q: q}}
	var st stats.Stage
	poll.Until(t, "degraded with the connect's error", func() bool {
		st = store.Stage().Stats()
		fed.Figures(&st)
		return st.Health.State == stats.HealthDegraded && strings.Contains(st.Health.Error, "; last error: ")
	})
	if !strings.HasPrefix(st.Health.Error, "not connected to NATS (nats://127.0.0.1:1) since ") {
		t.Errorf("degraded with %q; want not connected", st.Health.Error)
	}
	cancel()
	if err := <-started; !errors.Is(err, context.Canceled) {
		t.Fatalf("Start after cancel: %v, want context.Canceled", err)
	}
	store.Close()

	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(wait) {
		t.Fatal("the server did not start")
	}
	c = NewClient(Config{URL: srv.ClientURL()}, "test", nil)
	q = c.Queue("store", QueueConfig{Stream: "t_nojsstart"}, port.Block, 64)
	_, cons = engine.NewSourceStage(stage.Settings{Name: "store"}, q.Consumer(), nil)
	_, store = engine.NewHandlerStage(stage.Settings{Name: "store"}, &sink{seen: map[string]int{}}, nil)
	cons.Connect(store.Stage(), nil)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { started <- cons.Start(ctx) }()
	poll.Until(t, "a failed try to make the streams", func() bool {
		q.st.mu.Lock()
		defer q.st.mu.Unlock()
		return q.st.startErr != ""
	})
	// Read just under startingFor after the start began, and at it: at
	// time.Now(), a first try that failed more than startingFor after
	// the start (a loaded machine) read as a start too long.
	q.st.mu.Lock()
	starting := q.st.startSince
	q.st.mu.Unlock()
	h := stats.Health{State: stats.HealthOK}
	q.consumerHealth(&h, Stats{}, starting.Add(startingFor-time.Millisecond))
	if h.State != stats.HealthOK {
		t.Errorf("health %+v as the start begins; want ok", h)
	}
	q.consumerHealth(&h, Stats{}, starting.Add(startingFor))
	if h.State != stats.HealthDegraded || !strings.HasPrefix(h.Error, "consumer store of stream t_nojsstart not made yet") ||
		!strings.Contains(h.Error, "create stream t_nojsstart") {
		t.Errorf("health %+v once the start has tried for %s; want degraded, saying why", h, startingFor)
	}
	cancel()
	if err := <-started; !errors.Is(err, context.Canceled) {
		t.Fatalf("Start after cancel: %v, want context.Canceled", err)
	}
	store.Close()
}
