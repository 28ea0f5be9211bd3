package engine

// This file holds the worker loop: taking a batch from the port, running
// the handler on it, and recycling the events it finished.

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"go.uber.org/zap"
)

// work is one worker of the pool. It takes batches with take, which ends
// when the pool retires the worker (take is ctx's child); the handler gets
// ctx, so a retired worker finishes its batch undisturbed and then leaves.
func (s *Stage) work(ctx, take context.Context, w *port.Worker[*stage.Event]) {
	defer s.wg.Done()
	defer w.Leave()
	ctx = context.WithValue(ctx, track.WorkerKey{}, w) // for stage.Blocking
	if s.shards != nil {
		s.workSharded(ctx, take, w) // shard_by: through the mailboxes
		return
	}
	var buf []port.Packet[*stage.Event]
	var batch []*stage.Event
	out := s.NewEmitter()
	for {
		// The batch size is read per batch: a controller or an operator
		// may have changed it.
		if size := int(s.batchNow.Load()); size != len(buf) {
			if size > cap(buf) {
				buf = make([]port.Packet[*stage.Event], size)
				batch = make([]*stage.Event, size)
			}
			buf, batch = buf[:size], batch[:size]
		}
		// Abort ends ctx, and take only after it (a child is cancelled
		// after its parent's Done is closed): a handler that returned on
		// ctx's end must not find take still open and fail the queue.
		if ctx.Err() != nil {
			return
		}
		n, err := w.GetBatch(take, buf)
		if err != nil {
			return // closed and drained, aborted, or retired
		}
		// A batch the queue filled by itself says the queue held at least
		// a batch: what the batching controller grows on.
		if n == len(buf) {
			s.fullBatches.Add(1)
		}
		s.batches.Add(1)
		if n < len(buf) && s.set.Linger > 0 {
			n = s.linger(ctx, take, w, buf, n)
		}
		for i := range buf[:n] {
			batch[i] = buf[i].Value
		}
		s.run(ctx, batch[:n], out)
		// Drop the references: an idle worker must not keep events (and
		// the read buffers their payloads share) reachable.
		clear(buf[:n])
		clear(batch[:n])
	}
}

// linger waits up to Linger (or until take ends) for the batch to fill.
// While it waits the worker holds no run slot, and as the newest waiter
// it is the first to be handed new events. A wait that ends without
// events leaves it without a slot, so it takes one back before its
// handler runs (port.Worker.Acquire), waiting while the stage's
// concurrency is taken: only an Abort (ctx) lets it run without one.
func (s *Stage) linger(ctx, take context.Context, w *port.Worker[*stage.Event], buf []port.Packet[*stage.Event], n int) int {
	lctx, cancel := context.WithTimeout(take, s.set.Linger)
	defer cancel()
	for n < len(buf) {
		m, err := w.GetBatch(lctx, buf[n:])
		if err != nil {
			break
		}
		n += m
	}
	_ = w.Acquire(ctx) // fails only on Abort, when the handler's ctx has ended too
	return n
}

// run hands one batch to the handler and then flushes what it emitted to
// inline stages. A handler error or panic fails the events of the batch
// that the handler neither handed on nor finished.
//
// The latency recorded per event is its wait in the queue plus the batch's
// handling time; the wait is read before the handler runs, since once an
// event is handed on another worker owns it. Events posted together share
// their enqueue time, so the waits are kept as runs of equal values and
// each run is one histogram update rather than one per event.
func (s *Stage) run(ctx context.Context, batch []*stage.Event, out *Outputs) {
	s.in.Add(uint64(len(batch)))
	start := track.Nanotime()
	waits := out.waits[:0]
	gens := out.gens[:0]
	oldest := start
	for _, ev := range batch {
		st := state(ev)
		gens = append(gens, st.Gen.Load())
		oldest = min(oldest, st.Enqueued)
		w := start - st.Enqueued
		if k := len(waits) - 1; k >= 0 && waits[k].ns == w {
			waits[k].n++
			continue
		}
		waits = append(waits, waitRun{ns: w, n: 1})
	}
	out.waits, out.gens = waits, gens
	s.beginCall(start, oldest)
	err := abandoned(ctx, s.call(out.healthCtx(ctx), batch, out))
	took := track.Nanotime() - start
	s.endCall(ctx, start+took, took, err)
	if err != nil {
		for i, ev := range batch {
			// Not one the handler finished, recycled by an inline stage
			// after it, and still held here: neither finished nor handed on.
			// Owner first, then Gen (as below): an event recycled and reused
			// between the two loads has a new Gen by the second, where the
			// other order could read the old Gen and the new life's Owner.
			if st := state(ev); st.Owner.Load() == &s.h && st.Gen.Load() == gens[i] {
				ev.Done(err)
			}
		}
	}
	for _, w := range waits {
		s.lat.observeN(w.ns+took, w.n)
	}
	out.Flush(ctx)
	// The handler has returned and what it emitted is handed on: the
	// events of the batch that this stage finished are no one's any more,
	// and are recycled. Those handed on are the next stages' (one that
	// finishes them recycles them); the owner tells them apart, and the
	// gen an event reused since.
	for i, ev := range batch {
		if st := state(ev); st.Owner.Load() == s.h.Mark() && st.Gen.Load() == gens[i] {
			recycle(ev)
		}
	}
}

// waitRun is n consecutive events of a batch that waited ns in the queue.
type waitRun struct {
	ns int64
	n  uint64
}

func (s *Stage) call(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
	if err := s.handle(ctx, batch, out); err != nil {
		return fmt.Errorf("stage %q: %w", s.set.Name, err)
	}
	return nil
}

// abandoned marks err busy when it ended the batch because ctx ended, as
// a stop's abort (phase two) ends it: the handler gave the records up
// unfinished rather than refused them, so they are for the client to send
// again, and a source tells it so ("nack N busy", 503 with Retry-After).
// Without the class a client read `stage "store": context canceled` as a
// refusal of the records themselves and did not resend them. The text is
// err's, unchanged, and errors.Is still finds context.Canceled in it.
func abandoned(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, stage.ErrBusy) {
		return err
	}
	if errors.Is(err, ctx.Err()) || errors.Is(err, context.Cause(ctx)) {
		return stage.WithClass(err, stage.ErrBusy)
	}
	return err
}

func (s *Stage) handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) (err error) {
	defer s.catch("handler", &err)
	return s.handler.Handle(ctx, batch, out)
}

// catch turns a panic in the kind's code into *err, the error of the
// kind's method that panicked (in names it): a panic is a bug in the
// kind, and it fails what the call was for (a handler's batch, the
// pipeline's start) rather than the whole process. It counts the panic
// in the stage's figures and logs it with the stack, which the error
// cannot carry. Every call of a kind's method the runtime makes defers
// it, directly, as recover works only there:
//
//	defer s.catch("Start", &err)
func (s *Stage) catch(in string, err *error) {
	v := recover()
	if v == nil {
		return
	}
	s.panics.Add(1)
	// The value is redacted as any error is: a kind may panic with a
	// message that holds its DSN. The stack skips catch and the
	// runtime's panic: it starts where the kind panicked.
	msg := stage.Redact(fmt.Sprint(v))
	s.log.Error(in+" panicked", zap.String("stage", s.set.Name), zap.String("panic", msg),
		zap.StackSkip("stack", 2))
	*err = fmt.Errorf("%s panic: %s", in, msg)
}
