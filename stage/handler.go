package stage

import (
	"context"

	"github.com/stagedserver/seda/stats"
	"go.uber.org/zap"
)

// Handler processes batches of events. Handle is called by the stage's
// workers, concurrently from up to `workers` goroutines (at most
// `concurrency` of them running at once), so a Handler must be safe for
// concurrent use.
//
// For each event of the batch, Handle either hands it on with out.Emit or
// finishes it with ev.Done. An error returned by Handle fails every event of
// the batch that was neither handed on nor finished; so does a panic, which
// is recovered and logged with the stage's name.
type Handler interface {
	Handle(ctx context.Context, batch []*Event, out Emitter) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, batch []*Event, out Emitter) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, batch []*Event, out Emitter) error {
	return f(ctx, batch, out)
}

// Emitter hands events to the next stage. After Emit the caller no longer
// owns ev. Emitted events are handed over in batches, when the worker's
// batch is done (or earlier, once the next stage's batch size is reached);
// an event that cannot be handed over then (the next queue is full under
// overflow reject: ErrBusy; the pipeline is shutting down) is finished with
// Done(err) by the emitter. Emit itself returns an error only when it fails
// at once (EmitTo an unknown route); the event is then finished too. A
// stage with no next stage finishes emitted events with Done(nil): the end
// of the pipeline.
type Emitter interface {
	Emit(ctx context.Context, ev *Event) error
	// EmitTo hands ev to the named next stage, which must be one of this
	// stage's declared routes (process.route uses it).
	EmitTo(ctx context.Context, next string, ev *Event) error
}

// Starter is implemented by handlers that set something up before the
// pipeline takes input (open a connection pool, create a table). Stages are
// started sinks first; an error stops the pipeline from starting.
type Starter interface {
	Start(ctx context.Context) error
}

// Closer is implemented by handlers that hold resources; Close is called
// once, after the stage's workers have all returned.
type Closer interface {
	Close() error
}

// Source is a stage that makes events from outside input (a TCP listener).
// It owns its goroutines, and its own port if it has one; the pipeline
// drives it through three steps.
type Source interface {
	// Start begins taking input; it returns once the source is ready (its
	// listener bound). rt makes events, emitters and counters for it.
	Start(ctx context.Context, rt SourceRuntime) error
	// StopInput stops taking new input (listeners close, reads stop) and
	// returns once every record already read has been emitted or refused.
	StopInput(ctx context.Context) error
	// Drain returns once every event the source emitted is finished and
	// its completions are written (acks flushed), or ctx ends.
	Drain(ctx context.Context) error
	// Close releases everything and joins the source's goroutines. It is
	// called once, after Drain, or at once when shutdown is forced.
	Close() error
}

// Gauger is implemented by sources that have a queue and a pool of their
// own, so /stats shows them like any other stage's.
type Gauger interface {
	Gauges() (stats.Queue, stats.Pool)
}

// Env is what a kind's constructor gets besides its configuration.
type Env struct {
	Stage    string      // the stage's name
	Settings Settings    // the stage's common knobs (workers, batch, ...), defaults filled in
	Logger   *zap.Logger // never nil; already named after the stage
	// Routes lists the stage's declared next stages (its `next` and, for
	// routing kinds, the route targets), for constructors that validate
	// their own references.
	Routes []string
}
