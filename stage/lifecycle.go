package stage

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Lifecycle drives a stage: connecting it, starting it and stopping it in
// the order the pipeline's two-phase stop needs. NewHandlerStage and
// NewSourceStage return it to the stage's creator (pipeline.New); kinds
// never see it, so a kind cannot stop itself or another stage.
type Lifecycle struct{ s *Stage }

// Connect sets where the stage's events go: next for Emit, routes (which
// include next) for EmitTo. It must be called before Start.
func (l Lifecycle) Connect(next *Stage, routes map[string]*Stage) { l.s.connect(next, routes) }

// Start starts the stage: a handler's Starter, then its pool; a source's
// Start. The workers run until CloseQueue and drain, or until Abort.
func (l Lifecycle) Start(ctx context.Context) error { return l.s.start(ctx) }

// StopInput stops a source's input (Source.StopInput); for other stages it
// does nothing.
func (l Lifecycle) StopInput(ctx context.Context) error {
	if l.s.src == nil {
		return nil
	}
	return l.s.src.StopInput(ctx)
}

// Drain waits for a source's events to finish and its completions to be
// written (Source.Drain); for other stages it does nothing.
func (l Lifecycle) Drain(ctx context.Context) error {
	if l.s.src == nil {
		return nil
	}
	return l.s.src.Drain(ctx)
}

// CloseQueue closes the stage's port: nothing new is accepted, the workers
// finish what is queued and return. Call it once every upstream stage has
// stopped emitting.
func (l Lifecycle) CloseQueue() { l.s.closeQueue() }

// Wait returns once every worker of the stage has returned.
func (l Lifecycle) Wait() { l.s.wg.Wait() }

// Abort cancels the workers' context: a worker waiting for events returns,
// and handlers see their context end. Events still queued stay unfinished
// (the pipeline counts them as abandoned).
func (l Lifecycle) Abort() { l.s.abort() }

// Close releases the handler's resources (Closer) or closes the source.
func (l Lifecycle) Close() error { return l.s.close() }

// Queued returns how many events wait in the stage's port (0 for inline
// stages and sources).
func (l Lifecycle) Queued() int {
	if l.s.port == nil {
		return 0
	}
	return l.s.port.Stats().Depth
}

// IsSource reports whether the stage is driven by a Source.
func (l Lifecycle) IsSource() bool { return l.s.src != nil }

// Stage returns the stage l drives.
func (l Lifecycle) Stage() *Stage { return l.s }

// SourceRuntime is what a Source gets from the pipeline when it starts:
// its stage's name, settings and logger, and the means to make events,
// hand them on and report their latency. It is deliberately narrow (as
// Benthos gives plugins a *service.Resources): a source cannot start, stop
// or reach into its stage or any other. The zero SourceRuntime is not
// usable; sources receive one in Source.Start.
type SourceRuntime struct{ s *Stage }

// Name returns the stage's name.
func (rt SourceRuntime) Name() string { return rt.s.set.Name }

// Settings returns the stage's common knobs, defaults filled in: a source
// with a pool of its own sizes it by Workers, Concurrency and Capacity.
func (rt SourceRuntime) Settings() Settings { return rt.s.set }

// Logger returns the stage's logger (never nil).
func (rt SourceRuntime) Logger() *zap.Logger { return rt.s.log }

// NewEvent makes an event read now; see Stage.NewEventAt.
func (rt SourceRuntime) NewEvent(payload []byte, seq uint64, origin Origin) *Event {
	return rt.s.NewEventAt(payload, seq, origin, time.Now())
}

// NewEventAt makes an event read at the given time, owned by the stage,
// with the given origin; see Stage.NewEventAt.
func (rt SourceRuntime) NewEventAt(payload []byte, seq uint64, origin Origin, arrived time.Time) *Event {
	return rt.s.NewEventAt(payload, seq, origin, arrived)
}

// NewEmitter returns an emitter for one of the source's goroutines; see
// Stage.NewEmitter.
// Under admission control (StartAdmission, called before) the emitter
// never waits for room: an event that finds the next queue full is
// refused busy at once, as the door refuses records.
func (rt SourceRuntime) NewEmitter() *Outputs {
	o := rt.s.NewEmitter()
	o.noWait = rt.s.adm.Load() != nil
	return o
}

// ObserveLatency records one latency figure for the stage: a source calls
// it when an event it made completes (read to ack), for /stats' p50/p99.
func (rt SourceRuntime) ObserveLatency(ns int64) { rt.s.lat.observe(ns) }

// ObserveFinished records the read-to-finish latency of ev, an event the
// source made that has just completed: for /stats' p50/p99 and, under
// admission control (StartAdmission), for the controller. A source calls
// it (or ObserveLatency) from its Completer.
func (rt SourceRuntime) ObserveFinished(ev *Event) {
	if ev.arrived == 0 {
		return
	}
	lat := ev.finishedAt() - ev.arrived
	rt.s.lat.observe(lat)
	if a := rt.s.adm.Load(); a != nil {
		a.observe(lat, ev.arrived)
	}
}

// ObserveFinishedAll is ObserveFinished for each event of evs, which a
// BatchCompleter got together: events read together and finished
// together have one latency, recorded once for the lot.
func (rt SourceRuntime) ObserveFinishedAll(evs []*Event) {
	a := rt.s.adm.Load()
	for i := 0; i < len(evs); {
		ev := evs[i]
		j := i + 1
		if ev.arrived == 0 {
			i = j
			continue
		}
		done := ev.finishedAt()
		for j < len(evs) && evs[j].arrived == ev.arrived && evs[j].doneAt == ev.doneAt && ev.doneAt != 0 {
			j++
		}
		lat := done - ev.arrived
		rt.s.lat.observeN(lat, uint64(j-i))
		if a != nil {
			for range j - i {
				a.observe(lat, ev.arrived)
			}
		}
		i = j
	}
}

// InFlight returns how many events the source made that are not finished:
// what its Drain waits for.
func (rt SourceRuntime) InFlight() uint64 { return rt.s.InFlight() }

// SetBatch pins the stage's batch size at n (1 to MaxBatch), or with n == 0
// hands it back to the batching controller, which goes on from the size
// it has. Workers take the new size from their next batch on. It fails
// for a stage without a pool of its own (ErrNotResizable) or one that is
// stopping.
func (l Lifecycle) SetBatch(n int) error { return l.s.setBatch(n) }

// SetWorkers pins the stage's pool at n workers (1 to MaxWorkers), or with
// n == 0 hands it back to the pool controller, which goes on from the size
// it has. Workers are added at once; a retired worker finishes the batch
// it holds and then leaves: nothing is interrupted.
func (l Lifecycle) SetWorkers(n int) error { return l.s.setWorkers(n) }

// SetConcurrency sets the stage's run slots (its port's concurrency) to n
// (1 to MaxWorkers). Nothing is interrupted: a lower limit takes effect as
// running workers come back for their next batch
// (port.Port.SetConcurrency). An auto pool never shrinks below its run
// slots, and its ceiling follows them.
func (l Lifecycle) SetConcurrency(n int) error { return l.s.setConcurrency(n) }
