package stage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
)

// Settings are the knobs every stage has (the YAML's common fields).
type Settings struct {
	Name        string
	Kind        string
	Workers     int           // pool size; 0: auto, sized by the pool controller from Concurrency up
	Concurrency int           // the port's run-slot limit; 0 means GOMAXPROCS
	Capacity    int           // queue capacity; 0 means DefaultCapacity
	Overflow    port.Overflow // what a full queue does to a sender
	Batch       int           // most events one worker takes at once; 0: auto, sized by the batching controller
	Linger      time.Duration // wait this long for a batch to fill
	Inline      bool          // no port, no pool: run in the upstream workers
	// Terminal marks a stage that finishes events itself (a database
	// sink): its Out counts the events it finished without error, since it
	// hands nothing on.
	Terminal bool
	// AutoWorkers and AutoBatch say that Workers and Batch were left to
	// the controllers (they were 0). WithDefaults sets them and fills in
	// the sizes the controllers start from: Workers = Concurrency, Batch
	// = the batch ceiling (see AutoBatchCeiling).
	AutoWorkers, AutoBatch bool
}

// WithDefaults returns s with the defaults of unset knobs filled in, as
// the stage will run with them.
func (s Settings) WithDefaults() Settings {
	s.fill()
	return s
}

func (s *Settings) fill() {
	if s.Concurrency <= 0 {
		s.Concurrency = runtime.GOMAXPROCS(0)
	}
	if s.Workers <= 0 {
		s.AutoWorkers = true
		s.Workers = s.Concurrency
	}
	if s.Capacity <= 0 {
		s.Capacity = DefaultCapacity
	}
	if s.Batch <= 0 {
		s.AutoBatch = true
		s.Batch = AutoBatchCeiling(s.Capacity)
	}
}

// DefaultCapacity is a stage's queue capacity when its settings leave it
// 0: room for two of the largest batches the batching controller makes
// (MaxAutoBatch), so that a worker taking a whole batch leaves as much
// queued for the next. With a smaller queue a database sink's transactions
// stay smaller than they could be, and B5 measured the untuned pipeline at
// three quarters of the tuned one with 1024 against on a par with 8192. A
// source under admission control counts its next queue as full long
// before that: at half its target's worth of work.
const DefaultCapacity = 2 * MaxAutoBatch

// AutoBatchCeiling is the largest batch the batching controller gives a
// stage whose queue holds capacity events: the capacity, at most
// MaxAutoBatch. An auto batch starts there, as SEDA's does: a size that
// the queue does not fill costs nothing without linger, and the
// controller halves it while batches stay small.
func AutoBatchCeiling(capacity int) int {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return min(capacity, MaxAutoBatch)
}

// Stage is one running stage: a handler with its port and worker pool, an
// inline handler called by upstream workers, or a source. Its methods are
// what anyone may use: its name and settings, its figures, and making and
// emitting events into it. Starting and stopping it is its Lifecycle's
// job, which only the stage's creator (the pipeline) holds; kinds see
// neither: a handler gets batches and an Emitter, a source a
// SourceRuntime.
type Stage struct {
	set Settings
	h   Handler
	src Source
	log *zap.Logger

	// doneMark is what the owner of an event becomes when it is finished
	// while this stage holds it (see Event.Done); markOf is set on a mark
	// alone.
	doneMark, markOf *Stage

	port   *port.Port[*Event] // nil for inline stages and sources
	next   *Stage             // where Emit sends; nil: end of the pipeline
	routes map[string]*Stage  // where EmitTo may send

	wg     sync.WaitGroup
	cancel context.CancelFunc // ends the workers' context: phase two of stop

	// The per-event counters of a source each get cache lines of their
	// own: created is written by the source's goroutine for every event
	// it makes, completed by whichever worker finishes one. Side by side
	// (or next to the per-batch counters below) every event would move
	// the line between cores twice.
	created   atomic.Uint64 // events made by this source; its In
	_         [cacheLine]byte
	completed atomic.Uint64 // events made by this source and finished
	_         [cacheLine]byte

	// The knobs as they are now, changed by the controllers and by
	// SetBatch, SetWorkers and SetConcurrency (control*.go), and the
	// totals the batching controller reads.
	batchNow             atomic.Int64
	batches, fullBatches atomic.Uint64
	pool                 pool
	ctl                  *control                  // nil for inline stages and sources
	adm                  atomic.Pointer[Admission] // a source's admission control, if any

	in, out, errors      atomic.Uint64
	panics, doubleDones  atomic.Uint64
	shed                 atomic.Uint64 // events refused upstream because this stage's queue was full
	lat                  latency
	lastDoubleDoneLogged atomic.Int64
}

// cacheLine is the padding that keeps two counters off one cache line: 128
// bytes, since x86 cores fetch lines in adjacent pairs.
const cacheLine = 128

// NewHandlerStage returns a stage that runs h on batches taken from its own
// port (or, when set.Inline, inside its upstream stage's workers), and the
// Lifecycle that drives it, for the stage's creator alone.
func NewHandlerStage(set Settings, h Handler, log *zap.Logger) (*Stage, Lifecycle) {
	set.fill()
	if log == nil {
		log = zap.NewNop()
	}
	s := &Stage{set: set, h: h, log: log}
	s.doneMark = newDoneMark(s)
	s.batchNow.Store(int64(set.Batch))
	s.pool.n.Store(int64(set.Workers))
	if !set.Inline {
		s.port = port.New[*Event](port.Options{
			Concurrency: set.Concurrency,
			Capacity:    set.Capacity,
			Overflow:    set.Overflow,
		})
		s.ctl = newControl(s)
	}
	s.lat.init()
	return s, Lifecycle{s}
}

// NewSourceStage returns a stage driven by src, and the Lifecycle that
// drives it. src may be nil: the stage then only makes events (NewEvent)
// for a program or test that feeds a pipeline itself.
func NewSourceStage(set Settings, src Source, log *zap.Logger) (*Stage, Lifecycle) {
	set.fill()
	if log == nil {
		log = zap.NewNop()
	}
	s := &Stage{set: set, src: src, log: log}
	s.doneMark = newDoneMark(s)
	s.batchNow.Store(int64(set.Batch))
	s.lat.init()
	return s, Lifecycle{s}
}

// Name returns the stage's name.
func (s *Stage) Name() string { return s.set.Name }

// Kind returns the stage's kind.
func (s *Stage) Kind() string { return s.set.Kind }

// Settings returns the stage's settings with defaults filled in.
func (s *Stage) Settings() Settings { return s.set }

// Addr returns the address a source listens on (a netio source's
// listener), or nil: for a stage that is not such a source, and before
// the source has started.
func (s *Stage) Addr() net.Addr {
	if a, ok := s.src.(interface{ Addr() net.Addr }); ok {
		return a.Addr()
	}
	return nil
}

func (s *Stage) connect(next *Stage, routes map[string]*Stage) {
	s.next, s.routes = next, routes
}

// NewEvent makes an event read by this source stage now: owned by it, with
// the given origin. The stage counts it as in flight until Done.
func (s *Stage) NewEvent(payload []byte, seq uint64, origin Origin) *Event {
	return s.NewEventAt(payload, seq, origin, time.Now())
}

// NewEventAt is NewEvent for a record that arrived at the given time. A
// source that frames many records out of one read takes the clock once per
// read and passes it here: a clock reading per record is a measurable part
// of a hop's cost.
func (s *Stage) NewEventAt(payload []byte, seq uint64, origin Origin, arrived time.Time) *Event {
	ev := events.Get().(*Event)
	ev.Payload, ev.Seq, ev.Origin, ev.src, ev.enqueued = payload, seq, origin, s, 0
	ev.SetArrived(arrived)
	ev.owner.Store(s)
	// Counted before anyone can finish it, so that InFlight never goes
	// below zero. A source's In is this count (see Stats): one atomic add
	// per event rather than two.
	s.created.Add(1)
	return ev
}

// InFlight returns how many events this source made that are not finished.
func (s *Stage) InFlight() uint64 { return s.created.Load() - s.completed.Load() }

// NewEmitter returns an emitter for one worker of this stage. It is not safe
// for concurrent use; Flush must be called after each batch so that inline
// stages downstream run.
func (s *Stage) NewEmitter() *Outputs { return &Outputs{from: s} }

func (s *Stage) start(ctx context.Context) error {
	if s.src != nil {
		if err := s.src.Start(ctx, SourceRuntime{s}); err != nil {
			return fmt.Errorf("stage %q: start: %w", s.set.Name, err)
		}
		return nil
	}
	s.project()
	if st, ok := s.h.(Starter); ok {
		if err := st.Start(ctx); err != nil {
			return fmt.Errorf("stage %q: start: %w", s.set.Name, err)
		}
	}
	if s.port == nil {
		return nil
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.startPool(wctx)
	s.startControl()
	return nil
}

// closeQueue: the controllers stop here, and the pool drains with the
// workers it has.
func (s *Stage) closeQueue() {
	if s.port != nil {
		s.stopControl()
		s.closePool()
		s.port.Close()
	}
}

func (s *Stage) abort() {
	s.stopControl()
	s.closePool()
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *Stage) close() error {
	s.stopControl()
	s.closePool()
	if a := s.adm.Load(); a != nil {
		a.close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	var err error
	if s.src != nil {
		err = s.src.Close()
	} else if c, ok := s.h.(Closer); ok {
		err = c.Close()
	}
	if err != nil {
		return fmt.Errorf("stage %q: close: %w", s.set.Name, err)
	}
	return nil
}

type workerKey struct{}

// Blocking runs fn; when ctx belongs to a stage worker (every Handle gets
// one), the worker gives up its run slot while fn runs, so another worker
// of the port may run: call blocking operations (database calls) this way.
func Blocking(ctx context.Context, fn func()) {
	if w, ok := ctx.Value(workerKey{}).(*port.Worker[*Event]); ok {
		w.Blocking(fn)
		return
	}
	fn()
}

// work is one worker of the pool. It takes batches with take, which ends
// when the pool retires the worker (take is ctx's child); the handler gets
// ctx, so a retired worker finishes its batch undisturbed and then leaves.
func (s *Stage) work(ctx, take context.Context, w *port.Worker[*Event]) {
	defer s.wg.Done()
	defer w.Leave()
	ctx = context.WithValue(ctx, workerKey{}, w)
	var buf []port.Packet[*Event]
	var batch []*Event
	out := s.NewEmitter()
	for {
		// The batch size is read per batch: a controller or an operator
		// may have changed it.
		if size := int(s.batchNow.Load()); size != len(buf) {
			if size > cap(buf) {
				buf = make([]port.Packet[*Event], size)
				batch = make([]*Event, size)
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
			n = s.linger(take, w, buf, n)
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

// linger waits up to Linger for the batch to fill. While it waits the
// worker holds no run slot, and as the newest waiter it is the first to be
// handed new events.
func (s *Stage) linger(ctx context.Context, w *port.Worker[*Event], buf []port.Packet[*Event], n int) int {
	lctx, cancel := context.WithTimeout(ctx, s.set.Linger)
	defer cancel()
	for n < len(buf) {
		m, err := w.GetBatch(lctx, buf[n:])
		if err != nil {
			break
		}
		n += m
	}
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
func (s *Stage) run(ctx context.Context, batch []*Event, out *Outputs) {
	s.in.Add(uint64(len(batch)))
	start := nanotime()
	waits := out.waits[:0]
	gens := out.gens[:0]
	for _, ev := range batch {
		gens = append(gens, ev.gen.Load())
		w := start - ev.enqueued
		if k := len(waits) - 1; k >= 0 && waits[k].ns == w {
			waits[k].n++
			continue
		}
		waits = append(waits, waitRun{ns: w, n: 1})
	}
	out.waits, out.gens = waits, gens
	if err := s.call(ctx, batch, out); err != nil {
		for i, ev := range batch {
			if ev.gen.Load() == gens[i] { // not one the handler finished, recycled by an inline stage after it
				ev.failIfOwned(s, err)
			}
		}
	}
	took := nanotime() - start
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
		if ev.owner.Load() == s.doneMark && ev.gen.Load() == gens[i] {
			ev.recycle()
		}
	}
}

// waitRun is n consecutive events of a batch that waited ns in the queue.
type waitRun struct {
	ns int64
	n  uint64
}

func (s *Stage) call(ctx context.Context, batch []*Event, out Emitter) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.panics.Add(1)
			s.log.Error("handler panicked; failing its batch",
				zap.String("stage", s.set.Name), zap.Any("panic", v), zap.Int("batch", len(batch)),
				zap.StackSkip("stack", 2))
			err = fmt.Errorf("stage %q: handler panic: %v", s.set.Name, v)
		}
	}()
	if err := s.h.Handle(ctx, batch, out); err != nil {
		return fmt.Errorf("stage %q: %w", s.set.Name, err)
	}
	return nil
}

func (s *Stage) doubleDone(ev *Event, err error) {
	s.doubleDones.Add(1)
	// Log at most once a second: a buggy handler may do this per event.
	now := nanotime()
	last := s.lastDoubleDoneLogged.Load()
	if (last == 0 || now-last >= int64(time.Second)) && s.lastDoubleDoneLogged.CompareAndSwap(last, now) {
		s.log.Error("event finished twice (Done called again); ignored",
			zap.String("stage", s.set.Name), zap.Uint64("key", ev.Origin.Key), zap.Uint64("seq", ev.Seq),
			zap.NamedError("second_err", err), zap.Uint64("total", s.doubleDones.Load()))
	}
}

// Outputs is the Emitter a worker uses. It collects emitted events per
// next stage and hands them over in Flush: to a port-based stage as one
// batch of posts (and early, once a stage's batch size is reached), to an
// inline stage as one call of its handler. So a queue hop costs one lock
// and one clock reading per batch rather than per event. Not safe for
// concurrent use: each worker has its own.
type Outputs struct {
	from    *Stage
	out     uint64 // events handed on since the last Flush
	targets []target
	last    *target   // the target of the previous emit: usually the next one's too
	waits   []waitRun // scratch for run's latency figures
	gens    []uint32  // scratch for run: the gen of each event of its batch
	// noWait: a full queue refuses events busy instead of making the
	// emitter wait (a source under admission control never waits).
	noWait bool
}

// target is one next stage and the events emitted to it since the last
// Flush.
type target struct {
	st *Stage
	// pkts holds the events for a port-based stage, already as the packets
	// PostBatch takes, so that an event is copied once on its way to the
	// port rather than into a list and then into packets.
	pkts []port.Packet[*Event]
	evs  []*Event // the events for an inline stage
	out  *Outputs // for an inline stage: the emitter its handler uses
}

var _ Emitter = (*Outputs)(nil)

// Emit hands ev to the stage's next stage.
func (o *Outputs) Emit(ctx context.Context, ev *Event) error {
	return o.emit(ctx, o.from.next, ev)
}

// EmitTo hands ev to the named route.
func (o *Outputs) EmitTo(ctx context.Context, next string, ev *Event) error {
	st, ok := o.from.routes[next]
	if !ok {
		err := fmt.Errorf("stage %q: no route to %q", o.from.set.Name, next)
		ev.Done(err)
		return err
	}
	return o.emit(ctx, st, ev)
}

func (o *Outputs) emit(ctx context.Context, st *Stage, ev *Event) error {
	if st == nil {
		o.out++
		ev.Done(nil) // the end of the pipeline
		return nil
	}
	// Swap rather than Store: it costs the same and catches a handler that
	// emits an event it already finished (counted as a second Done).
	if prev := ev.owner.Swap(st); prev.isDoneMark() {
		ev.owner.Store(prev)
		if ev.src != nil {
			ev.src.doubleDone(ev, nil)
		}
		return nil
	}
	o.out++
	t := o.last
	if t == nil || t.st != st {
		t = o.target(st)
		o.last = t
	}
	if st.port == nil {
		t.evs = append(t.evs, ev)
		return nil
	}
	// Fill the next slot field by field: Err and N of every slot stay
	// zero, and writing only Key and Value costs one write barrier instead
	// of a whole packet's.
	n := len(t.pkts)
	if n < cap(t.pkts) {
		t.pkts = t.pkts[:n+1]
	} else {
		t.pkts = append(t.pkts, port.Packet[*Event]{})
	}
	pk := &t.pkts[n]
	pk.Key = ev.Origin.Key
	pk.Value = ev
	if n+1 >= int(st.batchNow.Load()) {
		o.post(ctx, t)
	}
	return nil
}

func (o *Outputs) target(st *Stage) *target {
	for i := range o.targets {
		if o.targets[i].st == st {
			return &o.targets[i]
		}
	}
	t := target{st: st}
	if st.port == nil {
		t.out = st.NewEmitter()
		t.out.noWait = o.noWait
	}
	o.targets = append(o.targets, t)
	o.last = nil // append may have moved the targets
	return &o.targets[len(o.targets)-1]
}

// post hands t's events to its port. Events that cannot be posted (the
// queue is full under overflow reject, or closed) are finished with the
// reason, owned again by the emitting stage so that its error count shows
// them.
func (o *Outputs) post(ctx context.Context, t *target) {
	now := nanotime()
	for _, pk := range t.pkts {
		pk.Value.enqueued = now
	}
	var n int
	var err error
	if o.noWait {
		n, err = t.st.port.TryPostBatch(t.pkts)
	} else {
		n, err = t.st.port.PostBatch(ctx, t.pkts)
	}
	if err != nil {
		switch {
		case errors.Is(err, port.ErrFull):
			err = ErrBusy
		case errors.Is(err, port.ErrClosed):
			err = fmt.Errorf("stage %q: %w", t.st.set.Name, errShuttingDown)
		default:
			err = fmt.Errorf("stage %q: %w", t.st.set.Name, err)
		}
		for _, pk := range t.pkts[n:] {
			o.out--
			pk.Value.owner.Store(o.from)
			pk.Value.Done(err)
		}
	}
	clear(t.pkts) // an idle emitter keeps no event reachable
	t.pkts = t.pkts[:0]
}

var errShuttingDown = errors.New("shutting down")

// shedding returns the stage's next stage when events should be refused
// before this (inline) stage runs: the next stage is its only way on, its
// queue rejects on overflow, and the queue is full. Otherwise nil.
func (s *Stage) shedding() *Stage {
	n := s.next
	if n == nil || n.port == nil || n.set.Overflow != port.Reject || len(s.routes) > 1 {
		return nil
	}
	if !n.port.Full() {
		return nil
	}
	return n
}

// Flush hands over every event emitted since the last Flush: posts them to
// port-based stages and runs inline stages' handlers on theirs. It
// publishes the emitter's counters.
func (o *Outputs) Flush(ctx context.Context) {
	for i := range o.targets {
		t := &o.targets[i]
		if len(t.pkts) != 0 {
			o.post(ctx, t)
		}
		if len(t.evs) == 0 {
			continue
		}
		if next := t.st.shedding(); next != nil {
			// The inline stage's only next stage refuses events when
			// full, and it is full: refuse the batch now rather than run
			// the handler (a JSON decode, say) on events the queue would
			// turn away. Under overload this keeps the CPU for the events
			// that can be taken.
			next.shed.Add(uint64(len(t.evs)))
			for _, ev := range t.evs {
				ev.Done(ErrBusy)
			}
		} else {
			now := nanotime()
			for _, ev := range t.evs {
				ev.enqueued = now
			}
			t.st.run(ctx, t.evs, t.out)
		}
		clear(t.evs)
		t.evs = t.evs[:0]
	}
	if o.out != 0 {
		o.from.out.Add(o.out)
		o.out = 0
	}
}
