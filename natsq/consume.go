package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// Dead-letter classes: why a message was given up.
const (
	DeadRefused     = "refused"     // the stage refused the event (bad data)
	DeadMaxDeliver  = "max_deliver" // it failed, or was not finished, max_deliver times
	DeadUndecodable = "undecodable" // the message is not in this package's encoding
)

// Consumer returns the source that feeds the queue's stage in a process
// that runs it: it pulls messages from the stage's durable consumer (named
// after the stage and shared by every process that runs it) and posts
// each as an event to the stage's local queue. The pipeline connects it
// to the stage as its only upstream; it does not appear in /stats.
//
// Each event's completion settles its message: finished without error, it
// is acked; failed, it is NAKed with a delay (Backoff, doubled per
// delivery, at most MaxBackoff) so that JetStream delivers it again, to
// any process. An event refused for good, a message delivered more than
// MaxDeliver times, or one that cannot be decoded is published to the
// dead-letter stream STREAM_dead with its reason, and removed from the
// work stream only once the dead-letter stream has acknowledged it.
func (q *Queue) Consumer() stage.Source { return &consumer{q: q} }

type consumer struct {
	q      *Queue
	rt     stage.SourceRuntime
	out    stage.Emitter
	opened bool
	js     jetstream.JetStream
	cc     jetstream.ConsumeContext

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	names map[string]string // field names seen, interned (take's alone)

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
	dead      chan *inflight // messages to dead-letter
	deadEnd   chan struct{}  // closed by Drain: no more come; publish what is queued and return
	deadWG    sync.WaitGroup
	stopped   atomic.Bool // StopInput ran
	stopDead  sync.Once   // Drain closed deadEnd
}

var _ stage.Source = (*consumer)(nil)

// inflight is one message handed to the stage as an event: the event's
// Origin, so that the event's completion settles the message.
type inflight struct {
	c         *consumer
	msg       jetstream.Msg
	delivered uint64 // deliveries so far, this one included
	streamSeq uint64
	class     string // dead-letter class, once given up
	reason    string
}

// Start connects, makes sure the streams and the durable consumer exist,
// and starts pulling.
func (c *consumer) Start(ctx context.Context, rt stage.SourceRuntime) error {
	q := c.q
	c.rt = rt
	c.out = rt.NewEmitter()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.dead = make(chan *inflight, 1024)
	c.deadEnd = make(chan struct{})
	c.names = map[string]string{}
	c.pcond = sync.NewCond(&c.pmu)
	c.wake = make(chan struct{}, 1)
	c.inputDone = make(chan struct{})
	c.deadWG.Add(1)
	go c.deadLetters()

	js, err := q.c.open(ctx)
	if err != nil {
		return err
	}
	c.opened, c.js = true, js
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
		FilterSubject: subject(q.cfg.Stream),
	}
	var cons jetstream.Consumer
	if err := q.retry(ctx, "create consumer "+cfg.Durable, func(ctx context.Context) error {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, cfg)
		return err
	}); err != nil {
		return err
	}
	q.st.consuming.Store(true)
	q.st.setConsumer(cons)
	batch := rt.Settings().Batch
	pull := min(max(2*batch, 128), 4096, q.cfg.MaxAckPending)
	c.maxPend = pull
	c.posterWG.Add(1)
	go c.poster()
	c.cc, err = cons.Consume(c.take,
		jetstream.PullMaxMessages(pull),
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

// take is called by nats.go, one message at a time, for each message
// pulled. It blocks while the stage's queue is full (overflow block),
// which stops the pulling: at most PullMaxMessages wait in nats.go's
// buffer meanwhile.
func (c *consumer) take(msg jetstream.Msg) {
	in := &inflight{c: c, msg: msg}
	meta, err := msg.Metadata()
	if err != nil {
		in.class, in.reason = DeadUndecodable, "no JetStream metadata: "+err.Error()
		c.giveUp(in)
		return
	}
	in.delivered, in.streamSeq = meta.NumDelivered, meta.Sequence.Stream
	if in.delivered > uint64(c.q.cfg.MaxDeliver) {
		in.class = DeadMaxDeliver
		in.reason = fmt.Sprintf("delivered %d times without being finished (max_deliver %d)", in.delivered, c.q.cfg.MaxDeliver)
		c.giveUp(in)
		return
	}
	payload, fields, err := splitMessage(msg.Data())
	if err != nil {
		in.class, in.reason = DeadUndecodable, err.Error()
		c.giveUp(in)
		return
	}
	c.q.st.taken.Add(1)
	ev := c.rt.NewEventAt(payload, in.streamSeq, stage.Origin{To: in}, time.Now())
	if err := decodeFields(ev, fields, c.names); err != nil {
		ev.Done(err) // refused: dead-lettered
		return
	}
	c.pmu.Lock()
	for len(c.pend) >= c.maxPend && c.ctx.Err() == nil {
		c.pcond.Wait()
	}
	if c.ctx.Err() != nil {
		c.pmu.Unlock()
		ev.Done(errClosing) // NAKed at once: another process takes it
		return
	}
	c.pend = append(c.pend, ev)
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

// Complete settles the message of a finished event.
func (in *inflight) Complete(_ *stage.Event, err error) {
	c := in.c
	q := c.q
	switch {
	case err == nil:
		if aerr := in.msg.Ack(); aerr != nil {
			// Not acked: JetStream delivers it again after ack_wait, and
			// conflict: ignore (or the like) makes that harmless.
			q.log.Debug("nats: ack failed", zap.Uint64("stream_seq", in.streamSeq), zap.String("error", errText(aerr)))
			q.st.ackErrors.Add(1)
		} else {
			q.st.acked.Add(1)
		}
	case errors.Is(err, errUndecodable):
		in.class, in.reason = DeadUndecodable, err.Error()
		c.giveUp(in)
	case refused(err):
		in.class, in.reason = DeadRefused, err.Error()
		c.giveUp(in)
	case in.delivered >= uint64(q.cfg.MaxDeliver):
		in.class = DeadMaxDeliver
		in.reason = fmt.Sprintf("failed %d times (max_deliver %d); last: %v", in.delivered, q.cfg.MaxDeliver, err)
		c.giveUp(in)
	default:
		in.nak(c.backoff(in.delivered, err))
	}
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

func (in *inflight) nak(delay time.Duration) {
	if err := in.msg.NakWithDelay(delay); err != nil {
		in.c.q.log.Debug("nats: nak failed", zap.Uint64("stream_seq", in.streamSeq), zap.String("error", errText(err)))
	}
	in.c.q.st.naked.Add(1)
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
	return errors.Is(err, errUndecodable)
}

// giveUp hands a message to the dead-letter goroutine.
func (c *consumer) giveUp(in *inflight) {
	select {
	case c.dead <- in:
	case <-c.ctx.Done():
		in.nak(0)
	}
}

// deadLetters publishes the messages given up to the dead-letter stream
// and, once it has them, terminates them in the work stream. When the
// dead-letter stream cannot take one, the message is NAKed and comes back
// later. Once Drain says no more come, it publishes what is queued and
// returns.
func (c *consumer) deadLetters() {
	defer c.deadWG.Done()
	q := c.q
	end := c.deadEnd // once closed, each round takes what is queued, if anything
	for {
		var in *inflight
		select {
		case in = <-c.dead:
		case <-end:
			select {
			case in = <-c.dead:
			default:
				return
			}
		case <-c.ctx.Done():
			// Close: what is left goes back to the stream.
			for {
				select {
				case in := <-c.dead:
					in.nak(0)
				default:
					return
				}
			}
		}
		if err := c.publishDead(in); err != nil {
			q.log.Warn("nats: dead-lettering failed; the message comes back later",
				zap.Uint64("stream_seq", in.streamSeq), zap.String("error", errText(err)))
			q.st.deadErrors.Add(1)
			in.nak(c.backoff(in.delivered, err))
			continue
		}
		reason := in.reason
		if len(reason) > 200 {
			reason = reason[:200]
		}
		if err := in.msg.TermWithReason(reason); err != nil {
			q.log.Debug("nats: term failed", zap.Uint64("stream_seq", in.streamSeq), zap.String("error", errText(err)))
		}
		q.st.dead(in.class)
		q.log.Warn("nats: message dead-lettered", zap.String("dead_stream", deadStream(q.cfg.Stream)),
			zap.Uint64("stream_seq", in.streamSeq), zap.String("class", in.class), zap.String("reason", stage.Redact(in.reason)))
	}
}

func (c *consumer) publishDead(in *inflight) error {
	q := c.q
	h := nats.Header{}
	for k, v := range in.msg.Headers() {
		if k != nats.MsgIdHdr {
			h[k] = v
		}
	}
	h.Set(hdrReason, in.reason)
	h.Set(hdrClass, in.class)
	h.Set(hdrStreamSeq, strconv.FormatUint(in.streamSeq, 10))
	h.Set(hdrDelivered, strconv.FormatUint(in.delivered, 10))
	// One id per work-stream message: dead-lettered twice (a crash
	// between publish and term), it is stored once.
	h.Set(nats.MsgIdHdr, fmt.Sprintf("dead-%s-%d", q.cfg.Stream, in.streamSeq))
	m := &nats.Msg{Subject: subject(deadStream(q.cfg.Stream)), Data: in.msg.Data(), Header: h}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	_, err := c.js.PublishMsg(ctx, m, jetstream.WithExpectStream(deadStream(q.cfg.Stream)))
	return err
}

// StopInput stops pulling: messages nats.go has already received are
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

// Drain returns once every message taken is settled (its event finished,
// by the runtime's count, and the message acked, NAKed or dead-lettered)
// and the settlements are flushed to the server, or ctx ends.
func (c *consumer) Drain(ctx context.Context) error {
	if c.rt == nil {
		return nil // never started
	}
	if err := c.rt.WaitFinished(ctx); err != nil {
		return err
	}
	// Every event is finished and input has stopped: no more messages
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

// Close stops pulling at once and releases the connection. Messages not
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
	}
	c.q.st.consuming.Store(false)
	if c.opened {
		c.opened = false
		c.q.c.release()
	}
	return nil
}
