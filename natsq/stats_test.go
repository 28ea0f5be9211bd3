package natsq

// This file tests a queue's figures in /stats: a front's depth counts
// what waits to be published, and refusals of a full stream.

import (
	"context"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// A publishing process (a split front) counts what waits to be published
// in its stage's depth and bytes: the local queue and the envelopes the
// publisher retries. With the server away the stream's figures are the
// last it gave, and the depth stayed at them while the backlog grew,
// seen only in nats.local_depth (a review: depth 22, 3980 waiting).
func TestStandInDepthCountsWhatWaitsToBePublished(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	q := front.Queue("store", QueueConfig{Stream: "t_unpublished"}, port.Block, 64)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	// The stand-in as the pipeline makes it: its Figures fill its entry.
	pubStage, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1, Batch: 4, Capacity: 64},
		standIn{q.Publisher().(*publisher)}, nil)
	srcLife.Connect(pubStage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	emit := func(from, n int, a *acks) {
		out := src.NewEmitter()
		for i := from; i < from+n; i++ {
			out.Emit(ctx, src.NewEvent([]byte("0123456789"), uint64(i), stage.Origin{To: a}))
		}
		out.Flush(ctx)
	}
	figures := func() (stats.Stage, Stats) {
		st := pubStage.Stats()
		ns, _ := StatsOf(st)
		return st, ns
	}
	const stored, waiting = 5, 20
	a := newAcks(stored)
	emit(1, stored, a)
	a.wait(t)
	var st stats.Stage
	var ns Stats
	poll.Until(t, "the stream's figures", func() bool {
		st, ns = figures()
		return ns.Error == "" && ns.InfoAgeS > 0 && st.Queue.Depth == stored
	})
	streamBytes := ns.StreamBytes
	if st.Queue.Bytes != int64(streamBytes) || ns.Unpublished != 0 || ns.LocalDepth != 0 {
		t.Fatalf("with nothing waiting: bytes %d, want the stream's %d; unpublished %d, local %d",
			st.Queue.Bytes, streamBytes, ns.Unpublished, ns.LocalDepth)
	}

	srv.Stop()
	b := newAcks(waiting)
	emit(stored+1, waiting, b)
	poll.Until(t, "the backlog in the depth while the server is away", func() bool {
		st, ns = figures()
		return ns.Error != "" && ns.Unpublished > 0 && ns.LocalDepth+int(ns.Unpublished) == waiting
	})
	if st.Queue.Depth != stored+waiting {
		t.Errorf("depth %d with %d events in the stream and %d waiting (%d queued, %d in envelopes); want %d",
			st.Queue.Depth, stored, waiting, ns.LocalDepth, ns.Unpublished, stored+waiting)
	}
	if want := int64(streamBytes) + ns.LocalBytes + int64(ns.UnpublishedBytes); st.Queue.Bytes != want ||
		ns.LocalBytes != int64(10*ns.LocalDepth) || ns.UnpublishedBytes == 0 {
		t.Errorf("bytes %d (local %d, unpublished %d), want the stream's %d and those waiting: %d",
			st.Queue.Bytes, ns.LocalBytes, ns.UnpublishedBytes, streamBytes, want)
	}

	srv.Restart()
	for seq, err := range b.wait(t) {
		if err != nil {
			t.Errorf("event %d: %v", seq, err)
		}
	}
	poll.Until(t, "every event in the stream", func() bool {
		st, ns = figures()
		return ns.Error == "" && st.Queue.Depth == stored+waiting && ns.Unpublished == 0 && ns.LocalDepth == 0
	})
	pub.CloseQueue()
	pub.Wait()
	pub.Close()
	q.Wait()
}

// frontRig is a front's stand-in over a stream of room messages (one
// event an envelope), fed by a source stage: the setup of the tests of a
// full stream.
type frontRig struct {
	t        *testing.T
	ctx      context.Context
	url      string
	q        *Queue
	src      *engine.Stage
	pubStage *engine.Stage
	pub      engine.Lifecycle
}

// newFrontRig starts a stand-in of a queue on stream (max_msgs room)
// under overflow, its local queue holding local events, its worker
// taking batches of batch (0: the default).
func newFrontRig(t *testing.T, stream string, room int64, overflow port.Overflow, local, batch int) *frontRig {
	t.Helper()
	srv := natstest.Start(t, natstest.Options{})
	front := NewClient(Config{URL: srv.URL()}, "test", nil)
	q := front.Queue("store", QueueConfig{Stream: stream, MaxMsgs: room, EnvelopeEvents: 1}, overflow, local)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	pubStage, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1, Batch: batch, Overflow: overflow, Capacity: local},
		standIn{q.Publisher().(*publisher)}, nil)
	srcLife.Connect(pubStage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &frontRig{t: t, ctx: ctx, url: srv.URL(), q: q, src: src, pubStage: pubStage, pub: pub}
}

// emit sends n events numbered from from, each acked to a.
func (r *frontRig) emit(from, n int, a *acks) {
	out := r.src.NewEmitter()
	for i := from; i < from+n; i++ {
		out.Emit(r.ctx, r.src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: a}))
	}
	out.Flush(r.ctx)
}

// makeRoom lifts the stream's max_msgs.
func (r *frontRig) makeRoom(stream string) {
	r.t.Helper()
	js := natstest.JetStream(r.t, r.url)
	s, err := js.Stream(r.ctx, stream)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = -1
	if _, err := js.UpdateStream(r.ctx, cfg); err != nil {
		r.t.Fatal(err)
	}
}

// close stops the stand-in and its queue.
func (r *frontRig) close() {
	r.pub.CloseQueue()
	r.pub.Wait()
	r.pub.Close()
	r.q.Wait()
}

// A queue with overflow: reject shows it, and counts the events the full
// stream refused (finished busy) in the stage's rejected: the stage's
// local queue is made to block (see pipeline's build), and its entry read
// "overflow": "block" and rejected 0 while the clients got busy nacks.
func TestFullStreamRefusalsAreRejected(t *testing.T) {
	const n, room = 25, 10
	r := newFrontRig(t, "t_rejected", room, port.Reject, 64, 0)
	q, pubStage := r.q, r.pubStage
	a := newAcks(n)
	r.emit(1, n, a)
	a.wait(t)

	// The front's entry: the stand-in's.
	st := pubStage.Stats()
	ns, _ := StatsOf(st)
	if ns.Full != n-room || st.Rejected != n-room || st.Queue.Overflow != "reject" {
		t.Errorf("front: rejected %d, overflow %q, nats.full %d; want %d, reject, %d",
			st.Rejected, st.Queue.Overflow, ns.Full, n-room, n-room)
	}
	// The entry of a stage that runs here behind the queue: its local
	// queue blocks, and the refusals are this process's publisher's.
	here := stats.Stage{Queue: stats.Queue{Capacity: 64, Overflow: "block"}}
	q.Fill(&here)
	if here.Rejected != n-room || here.Queue.Overflow != "reject" {
		t.Errorf("one process: rejected %d, overflow %q; want %d, reject", here.Rejected, here.Queue.Overflow, n-room)
	}
	// A back publishes nothing, so it refused nothing.
	back := NewClient(Config{URL: r.url}, "test", nil)
	bq := back.Queue("store", QueueConfig{Stream: "t_rejected", MaxMsgs: room, EnvelopeEvents: 1}, port.Reject, 64)
	there := stats.Stage{Queue: stats.Queue{Capacity: 64, Overflow: "block"}}
	bq.Fill(&there)
	if there.Rejected != 0 || there.Queue.Overflow != "reject" {
		t.Errorf("back: rejected %d, overflow %q; want 0, reject", there.Rejected, there.Queue.Overflow)
	}
	bq.Wait()
	r.close()
}

// A front's depth counts the envelopes its publisher holds, not yet
// PubAcked, and so does its capacity: with the stream full under
// overflow block, the publisher retrying a batch and the local queue
// full behind it, the depth is the capacity, not past it (a front read
// 250 of 216 so).
func TestFrontDepthReachesCapacityWhenFull(t *testing.T) {
	const room, batch, local = 10, 4, 64
	r := newFrontRig(t, "t_fullcap", room, port.Block, local, batch)
	emit, pubStage := r.emit, r.pubStage
	stored := newAcks(room)
	emit(1, room, stored)
	stored.wait(t)
	// The stream is full: the worker's batch is retried, and the local
	// queue fills behind it.
	const waiting = batch + local
	a := newAcks(waiting)
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		emit(room+1, waiting, a)
	}()
	var st stats.Stage
	var ns Stats
	poll.Until(t, "the stream full, a batch retried and the local queue full", func() bool {
		st = pubStage.Stats()
		ns, _ = StatsOf(st)
		return ns.Error == "" && ns.StreamMsgs == room && ns.Unpublished == batch && ns.LocalDepth == local
	})
	if want := room + batch + local; st.Queue.Depth != want || st.Queue.Capacity != want {
		t.Errorf("full: depth %d of capacity %d; want %d of %d (the stream's %d, %d unpublished, %d queued)",
			st.Queue.Depth, st.Queue.Capacity, want, want, room, batch, local)
	}

	// Room in the stream lets the waiting events in.
	r.makeRoom("t_fullcap")
	for seq, err := range a.wait(t) {
		if err != nil {
			t.Errorf("event %d: %v", seq, err)
		}
	}
	<-emitted
	r.close()
}

// Under overflow block an envelope the full stream refuses is published
// again until there is room; nats.full counts its events once, however
// often they are tried (the tries are in publish_retries). It counted
// every refused try, so it grew for as long as the stream stayed full,
// several times the events the stream had refused.
func TestFullCountsAnEventOnceUnderBlock(t *testing.T) {
	const room, batch = 10, 4
	r := newFrontRig(t, "t_fullonce", room, port.Block, 64, batch)
	q, emit, pubStage := r.q, r.emit, r.pubStage
	stored := newAcks(room)
	emit(1, room, stored)
	stored.wait(t)

	// The stream is full: the publisher tries the held envelopes again
	// and again.
	a := newAcks(batch)
	emit(room+1, batch, a)
	var ns Stats
	poll.Until(t, "the held envelopes refused and tried three times more", func() bool {
		ns = q.Stats()
		return ns.Unpublished > 0 && ns.PublishRetries >= 3*ns.Unpublished
	})
	if ns.Full != ns.Unpublished {
		t.Errorf("stream full under block: nats.full %d with %d events held, publish_retries %d; want %d, each event once",
			ns.Full, ns.Unpublished, ns.PublishRetries, ns.Unpublished)
	}
	if st := pubStage.Stats(); st.Rejected != 0 {
		t.Errorf("rejected %d under block, want 0", st.Rejected)
	}
	full := ns.Full

	// Room in the stream lets them in; nothing more is counted.
	r.makeRoom("t_fullonce")
	for seq, err := range a.wait(t) {
		if err != nil {
			t.Errorf("event %d: %v", seq, err)
		}
	}
	if ns = q.Stats(); ns.Full != full || ns.Published != room+batch {
		t.Errorf("stored: nats.full %d, published %d; want %d and %d", ns.Full, ns.Published, full, room+batch)
	}
	r.close()
}
