package natsq

// This file holds the consumer: the source that pulls envelopes from a
// stage's durable consumer, posts their events to the stage and settles
// each envelope once all its events are finished.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// Dead-letter classes: why a message was given up.
const (
	DeadRefused     = "refused"     // the stage refused the event (bad data)
	DeadMaxDeliver  = "max_deliver" // it failed, or was not finished, max_deliver times
	DeadUndecodable = "undecodable" // the message is not in this package's encoding
)

// Consumer returns the source that feeds the queue's stage in a process
// that runs it: it pulls envelopes from the stage's durable consumer (named
// after the stage and shared by every process that runs it) and posts
// their events to the stage's local queue, many envelopes' worth at a
// time, so that the stage's batches are as large as in one process. The
// pipeline connects it to the stage as its only upstream; it does not
// appear in /stats.
//
// An envelope is settled once all of its events are finished:
//   - all finished without error, or refused for good and dead-lettered:
//     acked;
//   - any failed for a reason that may pass (busy, the database away, a
//     panic): the whole envelope is NAKed with a delay (Backoff, doubled
//     per delivery, at most MaxBackoff) and JetStream delivers it again, to
//     any process, events that were stored included: the idempotent store
//     absorbs the repeats (see the package doc); one the stop cut short
//     at its MaxDeliver-th delivery is requeued instead, as a fresh
//     message (see requeue), so that the stop does not count against it;
//   - an event refused for good (an error of class invalid, too_large or
//     database), or failing at the MaxDeliver-th delivery for a reason
//     other than the stop (see stopping), is published to the dead-letter
//     stream STREAM_dead on its own, with its reason, before the envelope
//     is acked or NAKed;
//   - an envelope delivered more than MaxDeliver times without being
//     settled (the processes that took it died) has each of its events
//     dead-lettered; one that cannot be decoded goes to STREAM_dead whole.
//
// While an envelope's events wait in the stage (a slow or absent
// database), the consumer tells JetStream the envelope is in progress
// before ack_wait runs out, so that it is not delivered again to another
// process meanwhile.
func (q *Queue) Consumer() stage.Source { return &consumer{q: q} }

type consumer struct {
	q      *Queue
	rt     stage.SourceRuntime
	out    stage.Emitter
	opened bool
	js     jetstream.JetStream
	cc     jetstream.ConsumeContext
	cmu    sync.Mutex
	cons   jetstream.Consumer // the durable consumer, once start made it (cmu)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	names map[string]string // field names seen, interned (take's alone)
	// maxPlain bounds an envelope's data once decompressed: the server's
	// max_payload, which no publisher's envelope passes (codec.Open).
	maxPlain int
	// maxEvents bounds an envelope's events: envelope_events, the most a
	// publisher of the stage puts in one, and at least minMaxEvents, so
	// that a publisher on another setting (a rolling change of the key, a
	// backlog published before it was lowered) is not refused.
	maxEvents int

	// take hands events to the poster through pend, which posts them to
	// the stage's queue a batch at a time (one lock and one wake per
	// batch, and fuller batches for the stage); take waits while pend
	// holds maxPend.
	pmu       sync.Mutex
	pcond     *sync.Cond
	pend      []*stage.Event
	maxPend   int
	wake      chan struct{} // a post is wanted
	inputDone chan struct{} // closed by StopInput once take has returned for good
	posterWG  sync.WaitGroup
	dead      chan *envelope // envelopes with dead letters to publish
	deadEnd   chan struct{}  // closed by Drain: no more come; publish what is queued and return
	deadWG    sync.WaitGroup
	stopped   atomic.Bool // StopInput ran
	stopDead  sync.Once   // Drain closed deadEnd

	// held are the envelopes taken and not settled, with when JetStream
	// last heard of each (taken, or told in progress).
	hmu    sync.Mutex
	held   map[*envelope]time.Time
	keepWG sync.WaitGroup

	// A requeue (see requeue) holds rmu for reading while it publishes
	// and acks; Close takes it for writing and sets released before it
	// gives the connection back, so that no requeue uses a connection
	// being closed, and Close waits for one under way.
	rmu      sync.RWMutex
	released bool
}

var (
	_ stage.Source  = (*consumer)(nil)
	_ stage.Emptier = (*consumer)(nil)
)

// Empty reports whether the stage's durable consumer has nothing left:
// no envelope waiting to be delivered, and none delivered and not yet
// acked (in this process or another). Before Start has made the consumer
// it reports false.
func (c *consumer) Empty(ctx context.Context) (bool, error) {
	c.cmu.Lock()
	cons := c.cons
	c.cmu.Unlock()
	if cons == nil {
		return false, nil
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("stage %q: %s: %w", c.q.stage, c.q.cfg.Stream, err)
	}
	return ci.NumPending == 0 && ci.NumAckPending == 0, nil
}

// envelope is one message taken: its events' Origin, so that their
// completions settle it.
type envelope struct {
	c         *consumer
	msg       jetstream.Msg
	data      []byte // the envelope's records (version 3: decompressed, then from Queue.bufs)
	at        []int  // where each event's record starts in data, then its length (nil: undecodable)
	delivered uint64
	streamSeq uint64
	// firstSeq is the envelope's sequence number when it was first
	// stored: streamSeq, or for a requeued copy its Seda-First-Seq. Dead
	// letters' ids key on it, so that an event dead-lettered before and
	// after a requeue is stored once.
	firstSeq uint64
	left     atomic.Int64 // events not yet finished

	mu     sync.Mutex
	dead   []deadEvent // events given up
	failed error       // the last error of an event that may pass on another delivery
	cut    bool        // an event was failed by the stop (see stopping)
	whole  *deadEvent  // the message is dead-lettered as it is (undecodable)
}

// deadEvent is an event given up, with why.
type deadEvent struct {
	i             int // its place in the envelope
	class, reason string
}

func (e *envelope) events() int { return max(len(e.at)-1, 0) }

// Connect connects to NATS, so that the queue's figures (the stream's
// backlog) are read while the stage it feeds is still starting (a
// database away at start), and takes nothing from the stream: Start does
// that, once the stage can handle what it posts. It retries until ctx
// ends, and returns what gives the connection back; Start takes a
// connection of its own, so the pipeline calls that once Start has
// returned, or once the stage's start has ended without it.
func (c *consumer) Connect(ctx context.Context) (release func(), err error) {
	c.q.st.wanted(time.Now())
	if _, err := c.q.c.open(ctx); err != nil {
		return nil, fmt.Errorf("stage %q: %w", c.q.stage, err)
	}
	return c.q.c.release, nil
}

// Start connects, makes sure the streams and the durable consumer exist,
// and starts pulling. When it fails it undoes what it did, as Close does
// (a source whose Start failed is never closed): its goroutines end and
// the connection is released.
func (c *consumer) Start(ctx context.Context, rt stage.SourceRuntime) error {
	if err := c.start(ctx, rt); err != nil {
		c.Close()
		return err
	}
	return nil
}

func (c *consumer) start(ctx context.Context, rt stage.SourceRuntime) error {
	q := c.q
	c.rt = rt
	c.out = rt.NewEmitter()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.dead = make(chan *envelope, 64)
	c.deadEnd = make(chan struct{})
	c.names = map[string]string{}
	c.pcond = sync.NewCond(&c.pmu)
	c.wake = make(chan struct{}, 1)
	c.inputDone = make(chan struct{})
	c.held = map[*envelope]time.Time{}
	now := time.Now()
	q.st.wanted(now)
	q.st.mu.Lock()
	q.st.startSince, q.st.startErr = now, ""
	q.st.mu.Unlock()
	c.deadWG.Add(1)
	go c.deadLetters()
	c.keepWG.Add(1)
	go c.keepInProgress()

	js, err := q.c.open(ctx)
	if err != nil {
		return err
	}
	c.opened, c.js = true, js
	c.maxPlain = int(js.Conn().MaxPayload())
	c.maxEvents = max(q.cfg.EnvelopeEvents, minMaxEvents)
	if err := q.ensureStreams(ctx, js); err != nil {
		return err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerName(q.stage),
		Description:   fmt.Sprintf("seda: stage %q", q.stage),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    -1, // counted here, so that a message past it is dead-lettered, not left in the stream
		MaxAckPending: q.cfg.MaxAckPending,
	}
	var cons jetstream.Consumer
	if err := q.retry(ctx, "create consumer "+cfg.Durable, func(ctx context.Context) error {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, cfg)
		return err
	}); err != nil {
		return q.otherConsumer(ctx, js, err)
	}
	q.st.consuming.Store(true)
	q.st.setConsumer(cons)
	q.st.mu.Lock()
	q.st.startSince, q.st.startErr = time.Time{}, ""
	q.st.mu.Unlock()
	c.cmu.Lock()
	c.cons = cons
	c.cmu.Unlock()
	// Events waiting to be posted: two of the stage's batches, and at
	// least an envelope's worth, so that a batch can fill from several
	// envelopes while the stage works on the last.
	c.maxPend = max(2*rt.Settings().Batch, q.cfg.EnvelopeEvents)
	c.posterWG.Add(1)
	go c.poster()
	c.cc, err = cons.Consume(c.take,
		jetstream.PullMaxMessages(min(pullEnvelopes, q.cfg.MaxAckPending)),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				q.log.Error("nats: the durable consumer is gone; recreate it by restarting the stage", zap.String("error", errText(err)))
				return
			}
			q.log.Debug("nats: consume", zap.String("error", errText(err)))
		}))
	if err != nil {
		return fmt.Errorf("consume from %s: %w", q.cfg.Stream, err)
	}
	return nil
}

// pullEnvelopes is how many envelopes nats.go buffers ahead of take: with
// envelopes of about a thousand events, a few batches of the stage.
const pullEnvelopes = 8

// pullHeartbeat is the idle heartbeat of the consumer's pull requests, and
// so, doubled, the longest a lost pull stalls the consumer. nats.go (as of
// v1.55.0) asks for more messages only from the callback that has just
// handled one, and skips asking while its previous pull request is still
// being sent. When take drains the buffer within that window (after a
// wait, with the queue's server in this process answering a pull before
// the request's send returns), no pull is outstanding and nothing asks
// again: the consumer sat idle, messages in the stream, until the
// heartbeat monitor noticed the silence, 30 s with the default heartbeat
// (15 s). Without this heartbeat TestConsumerWaitsPastMemoryLimit stalled
// so in 10 of 900 runs (three test processes at once, beside a busy loop);
// with it, none stalled. A heartbeat costs a few bytes a second while a
// pull waits on an idle stream.
const pullHeartbeat = time.Second

// minMaxEvents is the least bound on an envelope's events: 64 times
// envelope_events' default. A crafted message of 3-byte records makes at
// most that many events, some 10 MB of them, where only max_payload
// bounded them before.
const minMaxEvents = 1 << 16

// errWQMultipleUnfiltered is the server's code (nats-server's
// JSConsumerWQMultipleUnfilteredErr) for a second consumer on a
// work-queue stream.
const errWQMultipleUnfiltered = 10099

// otherConsumer explains err when the stream already has the consumer of
// another stage: a work-queue stream serves one stage, and a stage
// renamed leaves its old durable consumer owning the stream.
func (q *Queue) otherConsumer(ctx context.Context, js jetstream.JetStream, err error) error {
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != errWQMultipleUnfiltered {
		return err
	}
	var names []string
	if str, serr := js.Stream(ctx, q.cfg.Stream); serr == nil {
		lister := str.ConsumerNames(ctx)
		for name := range lister.Name() {
			names = append(names, name)
		}
	}
	return fmt.Errorf("%w: stream %s already has the consumer %s, of another stage (or of this one before a rename): "+
		"a work-queue stream serves one stage; delete the old consumer (nats consumer rm %s NAME) or name another stream",
		err, q.cfg.Stream, strings.Join(names, ", "), q.cfg.Stream)
}

// take is called by nats.go, one envelope at a time, for each message
// pulled. It blocks while the pipeline is over its memory limit and the
// consumer's own events hold some of it, and while the events waiting to
// be posted are at maxPend (the stage's queue is full, overflow block),
// which stops the pulling: at most pullEnvelopes wait in nats.go's buffer
// meanwhile (up to twice that for a moment if a missed heartbeat had
// nats.go pull again while the first pull's messages were on their way).
func (c *consumer) take(msg jetstream.Msg) {
	q := c.q
	env := &envelope{c: c, msg: msg}
	meta, err := msg.Metadata()
	if err != nil {
		env.whole = &deadEvent{class: DeadUndecodable, reason: "no JetStream metadata: " + err.Error()}
		c.giveUp(env)
		return
	}
	env.delivered, env.streamSeq = meta.NumDelivered, meta.Sequence.Stream
	env.firstSeq = env.streamSeq
	if first, err := strconv.ParseUint(msg.Headers().Get(codec.HdrFirstSeq), 10, 64); err == nil && first > 0 {
		env.firstSeq = first
	}
	data, at, err := codec.Open(msg.Data(), nil, c.maxPlain, c.maxEvents, &q.bufs)
	env.data, env.at = data, at
	if err != nil {
		err = fmt.Errorf("stage %q: %s message %d: %w", q.stage, q.cfg.Stream, env.streamSeq, err)
		env.whole = &deadEvent{class: DeadUndecodable, reason: err.Error()}
		c.giveUp(env)
		return
	}
	n := env.events()
	q.st.envelopesIn.Add(1)
	if env.delivered > uint64(q.cfg.MaxDeliver) {
		reason := fmt.Sprintf("its envelope was delivered %d times without being finished (max_deliver %d): "+
			"the processes that took it died, or were stopped before it was", env.delivered, q.cfg.MaxDeliver)
		for i := range n {
			env.dead = append(env.dead, deadEvent{i: i, class: DeadMaxDeliver, reason: reason})
		}
		c.giveUp(env)
		return
	}
	c.hmu.Lock()
	c.held[env] = time.Now()
	c.hmu.Unlock()
	// Past the pipeline's memory limit, wait while the consumer's own
	// events hold some of it (never on what only others hold: the front
	// in this process may be waiting for room in the stream), whatever
	// memory_limit's overflow: nobody is there to refuse to, and what is
	// not taken stays in the stream (nats.go stops pulling while take
	// waits). The envelope is held meanwhile, so JetStream hears it is in
	// progress. Once the stage stops taking input the wait ends and the
	// events go on as below.
	if w, ok := c.rt.(interface{ WaitMemoryRoom() }); ok {
		w.WaitMemoryRoom()
	}
	env.left.Store(int64(n))
	q.st.taken.Add(uint64(n))
	now := time.Now()
	evs := make([]*stage.Event, n)
	for i := range n {
		seq, payload, fields := codec.RecordHead(data[env.at[i]:env.at[i+1]])
		ev := c.rt.NewEventAt(payload, seq, stage.Origin{To: env, Key: uint64(i)}, now)
		codec.DecodeFields(ev, fields, c.names)
		evs[i] = ev
	}
	c.pmu.Lock()
	for len(c.pend) >= c.maxPend && c.ctx.Err() == nil {
		c.pcond.Wait()
	}
	if c.ctx.Err() != nil {
		c.pmu.Unlock()
		for _, ev := range evs {
			ev.Done(errClosing) // NAKed at once: another process takes it
		}
		return
	}
	c.pend = append(c.pend, evs...)
	c.pmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

var errClosing = errors.New("the stage is closing")

// poster posts what take gathered to the stage's queue, a batch at a
// time, until StopInput has seen the last of the input (then it posts
// what is left) or Close (then what is left is NAKed).
func (c *consumer) poster() {
	defer c.posterWG.Done()
	for {
		select {
		case <-c.wake:
			c.post()
		case <-c.inputDone:
			for c.post() {
			}
			return
		case <-c.ctx.Done():
			c.pmu.Lock()
			left := c.pend
			c.pend = nil
			c.pmu.Unlock()
			for _, ev := range left {
				ev.Done(errClosing)
			}
			return
		}
	}
}

// post posts the events gathered so far; false when there were none.
func (c *consumer) post() bool {
	c.pmu.Lock()
	batch := c.pend
	c.pend = nil
	c.pcond.Broadcast()
	c.pmu.Unlock()
	for _, ev := range batch {
		_ = c.out.Emit(c.ctx, ev) // a failure finishes the event, which NAKs it
	}
	c.out.Flush(c.ctx)
	return len(batch) > 0
}

// Complete records how one of the envelope's events finished, and
// settles the envelope when it was the last.
func (e *envelope) Complete(ev *stage.Event, err error) {
	if err != nil {
		q := e.c.q
		i := int(ev.Origin.Key)
		e.mu.Lock()
		switch {
		case refused(err):
			e.dead = append(e.dead, deadEvent{i: i, class: DeadRefused, reason: err.Error()})
		case e.c.stopping(err):
			// The stop cut it short, not the event: not dead-lettered
			// for it, whatever the delivery; the envelope is delivered
			// again, as Fate says (see redeliver).
			e.failed, e.cut = err, true
		case e.delivered >= uint64(q.cfg.MaxDeliver):
			e.dead = append(e.dead, deadEvent{i: i, class: DeadMaxDeliver,
				reason: fmt.Sprintf("failed %d times (max_deliver %d); last: %v", e.delivered, q.cfg.MaxDeliver, err)})
		default:
			e.failed = err
		}
		e.mu.Unlock()
	}
	if e.left.Add(-1) == 0 {
		e.c.settle(e)
	}
}

// stopping reports whether err is the stop's doing rather than the
// event's: the stage's context cancelled (phase two of a stop), the
// consumer closing (errClosing), or any error once the consumer is
// closing. Such a failure does not dead-letter an event, even at its
// max_deliver-th delivery: its envelope is NAKed, or requeued at its
// max_deliver-th delivery (see redeliver). (A handler's own
// timeout, context.DeadlineExceeded, is a failure like any other: the
// stage's context is never given a deadline.)
func (c *consumer) stopping(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, errClosing) || c.ctx.Err() != nil
}

// Fate says what becomes of an event that is not stored (see
// stage.Fate): one refused for good is dead-lettered; any other failure
// NAKs its envelope, and one left unfinished leaves it unacked, so
// JetStream delivers it again. (One failing at its max_deliver-th
// delivery for a reason other than the stop (see stopping) is
// dead-lettered too, but counted as redelivered: the error alone does not
// say which delivery it was.)
func (c *consumer) Fate(err error) stage.Fate {
	if refused(err) {
		return stage.FateDeadLettered
	}
	return stage.FateRedelivered
}

// settle acks or NAKs an envelope whose events are all finished, or hands
// it to the dead-letter goroutine when some were given up.
func (c *consumer) settle(e *envelope) {
	c.unhold(e)
	e.mu.Lock()
	dead, failed, cut := len(e.dead) > 0, e.failed, e.cut
	e.mu.Unlock()
	switch {
	case dead:
		c.giveUp(e)
	case failed != nil:
		c.redeliver(e, failed, cut)
		e.release()
	default:
		e.ack()
		e.release()
	}
}

// release gives a decompressed envelope's buffer back, once every event
// referring to it is finished and nothing is left to dead-letter.
func (e *envelope) release() {
	if len(e.data) > 0 && e.data[0] == codec.Version && len(e.msg.Data()) > 0 && e.msg.Data()[0] == codec.VersionS2 {
		e.c.q.bufs.Put(e.data)
	}
	e.data = nil
}

func (e *envelope) ack() {
	q := e.c.q
	if err := e.msg.Ack(); err != nil {
		// Not acked: JetStream delivers it again after ack_wait, and
		// conflict: ignore (or the like) makes that harmless.
		q.log.Debug("nats: ack failed", zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
		q.st.ackErrors.Add(1)
		return
	}
	q.st.acked.Add(uint64(e.events()))
}

// unhold stops telling JetStream the envelope is in progress.
func (c *consumer) unhold(e *envelope) {
	c.hmu.Lock()
	delete(c.held, e)
	c.hmu.Unlock()
}

// backoff is the delay before a message that failed its n-th delivery
// is delivered again: none when the process is stopping (another process
// may take it at once), else Backoff doubled per delivery, at most
// MaxBackoff.
func (c *consumer) backoff(n uint64, err error) time.Duration {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || c.ctx.Err() != nil {
		return 0
	}
	d := c.q.cfg.Backoff
	for i := uint64(1); i < n && d < c.q.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.q.cfg.MaxBackoff)
}

// redeliver has JetStream deliver an envelope again whose events failed
// for a reason that may pass (err, the last): it is NAKed, with a delay
// (see backoff). One the stop cut short (cut) at its max_deliver-th
// delivery is requeued instead (see requeue), or NAKed if that fails:
// JetStream counts the NAK as a delivery, so at its next it would be past
// max_deliver and every event in it dead-lettered, though none failed.
func (c *consumer) redeliver(e *envelope, err error, cut bool) {
	// An envelope some of whose events were dead-lettered is NAKed as
	// before: a copy would run those again, and store a record that
	// STREAM_dead also holds.
	e.mu.Lock()
	dead := len(e.dead) > 0
	e.mu.Unlock()
	if cut && !dead && e.delivered >= uint64(c.q.cfg.MaxDeliver) && c.requeue(e) {
		return
	}
	e.nak(c.backoff(e.delivered, err))
}

// requeueWait bounds each of a requeue's publishes and the ack of the
// message it replaces; it runs at a stop, when nothing should wait long.
// (A variable for tests, as is requeueAskAgain, called before a publish
// that got no answer is asked again.)
var (
	requeueWait     = 5 * time.Second
	requeueAskAgain = func() {}
)

// requeue puts an envelope back into the work stream as a fresh message,
// whose deliveries JetStream counts from one: the same subject and data,
// its Seda-Trace, its first sequence number (Seda-First-Seq, for its dead
// letters' ids) and a Nats-Msg-Id of its own (the original's would be
// taken for a retry of it within the duplicate window and dropped), made
// from the stream sequence it replaces, so that a second requeue of the
// same message is stored once. Once the stream has the copy (PubAck) the
// original is acked. A publish that got no answer is asked again under
// the same id, which the stream answers with a PubAck (a duplicate) if
// it has the copy. It reports whether the copy is stored; when it is not
// known to be (the stream full or refusing it, no PubAck to either try,
// the connection closing) the caller NAKs the original; a copy stored
// unanswered is then delivered beside it, and both the copy's records
// are stored and the original's dead-lettered past max_deliver. So it is
// when the copy is stored but the ack of the original is lost.
// A process that dies requeues nothing: JetStream delivers its envelopes
// again after ack_wait, and counts those deliveries, so that an envelope
// that crashes every process that takes it ends in the dead-letter stream.
func (c *consumer) requeue(e *envelope) bool {
	q := c.q
	c.rmu.RLock()
	defer c.rmu.RUnlock()
	if c.released || c.js == nil {
		return false
	}
	h := nats.Header{}
	if tr := e.msg.Headers().Get(codec.HdrTrace); tr != "" {
		h.Set(codec.HdrTrace, tr)
	}
	h.Set(codec.HdrFirstSeq, strconv.FormatUint(e.firstSeq, 10))
	h.Set(nats.MsgIdHdr, fmt.Sprintf("requeue-%s-%d", q.cfg.Stream, e.streamSeq))
	m := &nats.Msg{Subject: e.msg.Subject(), Data: e.msg.Data(), Header: h}
	ctx, cancel := context.WithTimeout(context.Background(), requeueWait)
	defer cancel()
	_, err := c.js.PublishMsg(ctx, m, jetstream.WithExpectStream(q.cfg.Stream))
	var refused *jetstream.APIError
	if err != nil && !errors.As(err, &refused) {
		// No answer: the copy may be stored all the same (the client
		// sends it once the link moves). Asked again under the same id,
		// the stream answers whether it has it (a duplicate is a PubAck).
		requeueAskAgain()
		ctx2, cancel2 := context.WithTimeout(context.Background(), requeueWait)
		defer cancel2()
		_, err = c.js.PublishMsg(ctx2, m, jetstream.WithExpectStream(q.cfg.Stream))
	}
	if err != nil {
		q.log.Warn("nats: requeueing an envelope the stop cut short at its max_deliver-th delivery failed; NAKed, "+
			"its next delivery dead-letters it (if the copy was stored unanswered, its records are stored too)",
			zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
		return false
	}
	// A context of its own: the first publish's may have run out.
	actx, acancel := context.WithTimeout(context.Background(), requeueWait)
	defer acancel()
	if err := e.msg.DoubleAck(actx); err != nil {
		q.log.Warn("nats: ack of a requeued envelope failed; it comes back past max_deliver, beside its copy",
			zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
		q.st.ackErrors.Add(1)
	}
	q.st.requeued.Add(1)
	return true
}

func (e *envelope) nak(delay time.Duration) {
	q := e.c.q
	if err := e.msg.NakWithDelay(delay); err != nil {
		q.log.Debug("nats: nak failed", zap.Uint64("stream_seq", e.streamSeq), zap.String("error", errText(err)))
	}
	q.st.naked.Add(uint64(max(e.events(), 1)))
}

// refused reports whether err refuses an event for good, so that
// delivering it again cannot help: the error classes stage.ErrorClass
// calls invalid, too_large and database (bad data, a row PostgreSQL
// refuses). Every other error (busy, a database that is away, a panic) is
// retried, up to max_deliver.
func refused(err error) bool {
	switch stage.ErrorClass(err) {
	case stage.ClassInvalid, stage.ClassTooLarge, stage.ClassDatabase:
		return true
	}
	return errors.Is(err, codec.ErrUndecodable)
}

// StopInput stops pulling: envelopes nats.go has already received are
// still handed to the stage; it returns once they all are.
func (c *consumer) StopInput(ctx context.Context) error {
	if c.cc == nil || !c.stopped.CompareAndSwap(false, true) {
		return nil
	}
	c.cc.Drain()
	select {
	case <-c.cc.Closed():
	case <-ctx.Done():
		return ctx.Err()
	}
	close(c.inputDone)
	done := make(chan struct{})
	go func() { c.posterWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err() // Close ends the poster
	}
}

// Drain returns once every envelope taken is settled (its events
// finished, by the runtime's count, and the envelope acked, NAKed or
// dead-lettered) and the settlements are flushed to the server, or ctx
// ends.
func (c *consumer) Drain(ctx context.Context) error {
	if c.rt == nil {
		return nil // never started
	}
	if err := c.rt.WaitFinished(ctx); err != nil {
		return err
	}
	// Every event is finished and input has stopped: no more envelopes
	// are given up; those queued for the dead-letter stream go there.
	c.stopDead.Do(func() { close(c.deadEnd) })
	done := make(chan struct{})
	go func() { c.deadWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("dead letters not written: %w", ctx.Err()) // Close NAKs them
	}
	if c.js != nil {
		if err := c.js.Conn().FlushTimeout(5 * time.Second); err != nil {
			return fmt.Errorf("flush acks: %w", err)
		}
	}
	return nil
}

// Close stops pulling at once and releases the connection. Envelopes not
// yet settled are left to JetStream, which delivers them again after
// ack_wait.
func (c *consumer) Close() error {
	if c.cancel != nil {
		c.cancel()
		c.pmu.Lock()
		c.pcond.Broadcast() // take waiting for room
		c.pmu.Unlock()
	}
	if c.cc != nil {
		c.cc.Stop()
		<-c.cc.Closed()
	}
	c.posterWG.Wait()
	if c.dead != nil {
		c.deadWG.Wait()
		c.keepWG.Wait()
	}
	c.rmu.Lock()
	c.released = true
	c.rmu.Unlock()
	c.q.st.consuming.Store(false)
	c.q.st.mu.Lock()
	c.q.st.wantSince, c.q.st.startSince, c.q.st.startErr = time.Time{}, time.Time{}, ""
	c.q.st.mu.Unlock()
	if n := c.q.st.envelopesIn.Load(); n > 0 {
		c.q.log.Info("nats: consumed", zap.Uint64("events", c.q.st.taken.Load()), zap.Uint64("envelopes", n),
			zap.Float64("events_per_envelope", float64(c.q.st.taken.Load())/float64(n)))
	}
	if c.opened {
		c.opened = false
		c.q.c.release()
	}
	return nil
}
