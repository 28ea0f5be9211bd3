package engine

// This file holds the Stage: what it is made of, how it is built, and
// how it starts and closes.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Stage is one running stage: a handler with its port and worker pool, an
// inline handler called by upstream workers, or a source. Its methods are
// what anyone may use: its name and settings, its figures, and making and
// emitting events into it. Starting and stopping it is its Lifecycle's
// job, which only the stage's creator (the pipeline) holds; kinds see
// neither: a handler gets batches and an Emitter, a source a
// stage.SourceRuntime.
type Stage struct {
	// h is the stage as a holder of events: the counters of the events
	// it finished and, for a source, made (internal/track).
	h track.Holder

	set     stage.Settings
	handler stage.Handler
	src     stage.Source
	log     *zap.Logger

	port   *port.Port[*stage.Event] // nil for inline stages and sources
	next   *Stage                   // where Emit sends; nil: end of the pipeline
	routes map[string]*Stage        // where EmitTo may send

	wg     sync.WaitGroup
	cancel context.CancelFunc // ends the workers' context: phase two of stop

	// The knobs as they are now, changed by the controllers and by
	// SetBatch, SetWorkers and SetConcurrency (control*.go), and the
	// totals the batching controller reads.
	batchNow             atomic.Int64
	batches, fullBatches atomic.Uint64
	pool                 pool
	ctl                  *control                  // nil for inline stages and sources
	shards               *shards                   // shard_by's mailboxes and key spread; nil without
	locks                *shardLocks               // shard_by on an inline stage
	adm                  atomic.Pointer[Admission] // a source's admission control, if any

	in                   atomic.Uint64
	panics, doubleDones  atomic.Uint64
	shed                 atomic.Uint64 // events refused upstream because this stage's queue was full
	lat                  latency
	lastDoubleDoneLogged atomic.Int64
	figuresPanicked      atomic.Bool // the kind's Figures panicked (logged once)

	// health is the stage's health, calls the handler calls started (a
	// source: its events, counted by h), callsDone those finished
	// (health.go) and callNanos their durations added up (the pool
	// controller's measure of how long calls take).
	health    health
	calls     ages
	callsDone atomic.Uint64
	callNanos atomic.Uint64

	// srcClosed: the source's Close was called, by a start that failed
	// or by close; whichever comes first (a start in the background may
	// fail as the stop closes) calls it, once.
	srcClosed atomic.Bool

	ended   chan struct{} // a source's: closed by EndInput
	endOnce sync.Once
	door    door  // a source's: its side of the memory limit (memory.go)
	fates   fates // a source's: its events by fate (fate.go)
}

// state returns the runtime's bookkeeping of ev: its first field, a
// track.State (stage.Event's t; stage's TestEventStateFirst checks the
// offset). This is the package's one unsafe conversion, the way
// protobuf-go reaches a message's MessageState: the plugin API keeps the
// field unexported, and no init hook or exported method hands it out.
func state(ev *stage.Event) *track.State { return (*track.State)(unsafe.Pointer(ev)) }

// events holds finished events for reuse (see recycle).
var events = sync.Pool{New: func() any { return new(stage.Event) }}

// recycle empties a finished event and gives it back for reuse. The
// runtime calls it once the handler that finished the event has
// returned; the generation changes, so that whoever saw the event in a
// batch tells it from the new record that reuses it.
func recycle(ev *stage.Event) {
	st := state(ev)
	st.Gen.Store(st.Gen.Load() + 1) // only the recycling stage writes it
	ev.Payload = nil
	ev.Origin = stage.Origin{}
	ev.ResetFields()
	events.Put(ev)
}

// NewHandlerStage returns a stage that runs h on batches taken from its own
// port (or, when set.Inline, inside its upstream stage's workers), and the
// Lifecycle that drives it, for the stage's creator alone.
func NewHandlerStage(set stage.Settings, h stage.Handler, log *zap.Logger) (*Stage, Lifecycle) {
	set = set.WithDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	s := &Stage{set: set, handler: h, log: log}
	s.h.Init(set.Terminal, nil)
	s.h.SetName(set.Name)
	s.batchNow.Store(int64(set.Batch))
	s.pool.n.Store(int64(set.Workers))
	if !set.Inline {
		s.port = port.New[*stage.Event](port.Options{
			Concurrency: set.Concurrency,
			Capacity:    set.Capacity,
			Overflow:    set.Overflow,
			MaxBytes:    set.MaxBytes,
		})
		s.ctl = newControl(s)
		s.pool.n.Store(int64(s.ctl.c.workers.now)) // an auto pool's start, which MaxWorkers may cap
	}
	s.initShards()
	s.lat.init()
	return s, Lifecycle{s}
}

// NewSourceStage returns a stage driven by src, and the Lifecycle that
// drives it. src may be nil: the stage then only makes events (NewEvent)
// for a program or test that feeds a pipeline itself.
func NewSourceStage(set stage.Settings, src stage.Source, log *zap.Logger) (*Stage, Lifecycle) {
	set = set.WithDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	s := &Stage{set: set, src: src, log: log, ended: make(chan struct{})}
	s.fates.of = fateSource(src)
	s.h.Init(false, s)
	s.h.SetName(set.Name)
	s.batchNow.Store(int64(set.Batch))
	s.lat.init()
	return s, Lifecycle{s}
}

// NewInputStage returns a source stage that runs in, and the Lifecycle
// that drives it: the runtime reads it, makes and emits the events, and
// drains and closes it (input.go).
func NewInputStage(set stage.Settings, in stage.Input, log *zap.Logger) (*Stage, Lifecycle) {
	src := &inputSource{in: in}
	st, l := NewSourceStage(set, src, log)
	src.st = st
	return st, l
}

// Name returns the stage's name.
func (s *Stage) Name() string { return s.set.Name }

// Kind returns the stage's kind.
func (s *Stage) Kind() string { return s.set.Kind }

// Settings returns the stage's settings with defaults filled in.
func (s *Stage) Settings() stage.Settings { return s.set }

// Addr returns the address a source listens on (a netio source's
// listener), or nil: for a stage that is not such a source, and before
// the source has started.
func (s *Stage) Addr() net.Addr {
	if a, ok := s.src.(interface{ Addr() net.Addr }); ok {
		return a.Addr()
	}
	return nil
}

// Ended returns a channel closed once the source has said its input is
// exhausted (stage.SourceRuntime.EndInput); nil for a stage that is not a
// source.
func (s *Stage) Ended() <-chan struct{} { return s.ended }

func (s *Stage) connect(next *Stage, routes map[string]*Stage) {
	s.next, s.routes = next, routes
}

// NewEvent makes an event read by this source stage now: owned by it, with
// the given origin. The stage counts it as in flight until Done.
func (s *Stage) NewEvent(payload []byte, seq uint64, origin stage.Origin) *stage.Event {
	return s.NewEventAt(payload, seq, origin, time.Now())
}

// NewEventAt is NewEvent for a record that arrived at the given time. A
// source that frames many records out of one read takes the clock once per
// read and passes it here: a clock reading per record is a measurable part
// of a hop's cost.
func (s *Stage) NewEventAt(payload []byte, seq uint64, origin stage.Origin, arrived time.Time) *stage.Event {
	return sourceRuntime{s}.NewEventAt(payload, seq, origin, arrived)
}

// sinceEpoch returns t as a track.Nanotime reading; 0 for the zero time.
func sinceEpoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := int64(t.Sub(track.Epoch()))
	if d == 0 {
		d = 1 // 0 means unset; a nanosecond off is no matter
	}
	return d
}

// InFlight returns how many events this source made that are not finished.
func (s *Stage) InFlight() uint64 { return s.h.InFlight() }

// NewEmitter returns an emitter for one worker of this stage. It is not safe
// for concurrent use; Flush must be called after each batch so that inline
// stages downstream run.
func (s *Stage) NewEmitter() *Outputs { return &Outputs{from: s} }

// Finished records the latency of n events this source made, read at
// arrived and finished lat ns later (track.Source): for /stats and, under
// admission control, for the controller.
func (s *Stage) Finished(lat, arrived int64, n uint64) {
	s.lat.observeN(lat, n)
	if a := s.adm.Load(); a != nil {
		a.observeN(lat, arrived, n)
	}
}

// DoubleDone counts an event of this source finished twice and logs it,
// at most once a second: a buggy handler may do this per event
// (track.Source).
func (s *Stage) DoubleDone(seq, key uint64, to any, err error) {
	if s.countDouble() {
		fs := []zap.Field{zap.String("stage", s.set.Name), zap.Uint64("key", key), zap.Uint64("seq", seq)}
		if c, ok := to.(stage.Completer); ok {
			// Named only when logged: a buggy handler may do this per
			// event, and the name may cost an allocation.
			if sender := (stage.Origin{To: c, Key: key}).Sender(); sender != "" {
				fs = append(fs, zap.String("sender", sender))
			}
		}
		fs = append(fs, zap.String("second_err", redactedErr(err)), zap.Uint64("total", s.doubleDones.Load()))
		s.log.Error("event finished twice (Done called again); ignored", fs...)
	}
}

// redactedErr is err's text with its secrets redacted, "" for nil.
func redactedErr(err error) string {
	if err == nil {
		return ""
	}
	return stage.Redact(err.Error())
}

// doubleEmit counts an event this stage's handler emitted after it had
// handed it on (Emit called again), and logs it, at most once a second.
// It is counted with the second Dones, in the emitting stage's
// double_done: the same bug, an event handed off twice.
func (s *Stage) doubleEmit() {
	if s.countDouble() {
		s.log.Error("event emitted twice (Emit called again after it was handed on); ignored",
			zap.String("stage", s.set.Name), zap.Uint64("total", s.doubleDones.Load()))
	}
}

// countDouble counts a second hand-off of an event and reports whether to
// log it: not if one was logged within the last second.
func (s *Stage) countDouble() bool {
	s.doubleDones.Add(1)
	now := track.Nanotime()
	last := s.lastDoubleDoneLogged.Load()
	return (last == 0 || now-last >= int64(time.Second)) && s.lastDoubleDoneLogged.CompareAndSwap(last, now)
}

func (s *Stage) start(ctx context.Context) error {
	if s.src != nil {
		err := s.startSource(ctx)
		if err == nil {
			return nil
		}
		// A Source is closed whether Start succeeded or not, as a
		// Handler is: a Start that fails halfway (a goroutine started, a
		// second listener failing to bind) releases what it took in
		// Close. The pipeline does not close a source that did not
		// start, so it is closed here, once.
		err = fmt.Errorf("stage %q: start: %w", s.set.Name, err)
		// The engine's parts it may have started too (StartAdmission's
		// controller, which ticks until closed; the memory door).
		if a := s.adm.Load(); a != nil {
			a.close()
		}
		s.door.close()
		if cerr := s.closeSourceOnce(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stage %q: close: %w", s.set.Name, cerr))
		}
		return err
	}
	if err := s.startHandler(ctx); err != nil {
		return fmt.Errorf("stage %q: start: %w", s.set.Name, err)
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

// The kind's methods are called through these, each with catch deferred:
// a panic in one fails that step (the start, the stop) with the stage's
// error, and the pipeline stops what it started, closing the other
// stages, rather than the process dying.

func (s *Stage) startSource(ctx context.Context) (err error) {
	defer s.catch("Start", &err)
	return s.src.Start(ctx, sourceRuntime{s})
}

func (s *Stage) startHandler(ctx context.Context) (err error) {
	defer s.catch("Start", &err)
	s.project() // calls FieldsRead and Project
	if st, ok := s.handler.(interface{ Start(context.Context) error }); ok {
		// Start's context carries the stage's health, as Handle's does, so
		// that a Start retrying an unreachable service (stage.ReportAttempt)
		// shows the stage down rather than ok while it waits.
		return st.Start(context.WithValue(ctx, track.HealthKey{}, &s.health))
	}
	return nil
}

func (s *Stage) stopInput(ctx context.Context) (err error) {
	defer s.catch("StopInput", &err)
	return s.src.StopInput(ctx)
}

func (s *Stage) drain(ctx context.Context) (err error) {
	defer s.catch("Drain", &err)
	return s.src.Drain(ctx)
}

// closeSourceOnce closes the source unless it was closed already.
func (s *Stage) closeSourceOnce() error {
	if !s.srcClosed.CompareAndSwap(false, true) {
		return nil
	}
	return s.closeKind()
}

func (s *Stage) closeKind() (err error) {
	defer s.catch("Close", &err)
	if s.src != nil {
		return s.src.Close()
	}
	if c, ok := s.handler.(interface{ Close() error }); ok {
		return c.Close()
	}
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
		s.door.close()
		err = s.closeSourceOnce() // nil if a start that failed closed it
	} else {
		err = s.closeKind()
	}
	if err != nil {
		return fmt.Errorf("stage %q: close: %w", s.set.Name, err)
	}
	return nil
}
