package stage

// This file holds the processing side of the plugin API: Handler, the
// Emitter it hands events on with, Blocking, and the Env a kind's
// constructor gets.

import (
	"context"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/track"
)

// Handler processes batches of events: a processor or a sink. Handle is
// called by the stage's workers, concurrently from up to `workers`
// goroutines (at most `concurrency` of them running at once), so a
// Handler must be safe for concurrent use.
//
// For each event of the batch, Handle either hands it on with out.Emit
// or finishes it with ev.Done (a sink finishes a committed batch with
// DoneAll), before it returns: once Handle has returned, the runtime
// reuses the events the stage finished, so a handler must not finish an
// event of the batch later, from another goroutine. An error returned by Handle fails every event of the batch
// that was neither handed on nor finished; so does a panic, which is
// recovered and logged with the stage's name. ctx ends when the pipeline
// is stopped for good (phase two of its stop): a handler that waits on
// something returns then. A handler need not Flush out: the runtime does
// once Handle returns. A handler that retries calls itself reports each
// attempt with ReportAttempt. Kind lists the optional methods a handler may
// have (Start, Close, FieldsRead, FieldsMade, Project, MaxWorkers).
type Handler interface {
	Handle(ctx context.Context, batch []*Event, out Emitter) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, batch []*Event, out Emitter) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, batch []*Event, out Emitter) error {
	return f(ctx, batch, out)
}

// Emitter hands events to the next stage. After Emit the caller no
// longer owns ev: it must neither finish nor emit it again. A second
// Emit of it is ignored, counted in the stage's double_done and logged,
// as a second Done is. An Emitter is not safe for concurrent use: each worker,
// and each goroutine of a source, has its own.
//
// Emitted events are handed over in batches: at Flush, or earlier, once
// the next stage's batch size is reached. An event that cannot be handed
// over then is finished with Done(err) by the emitter: ErrBusy when the
// next queue is full under overflow reject (or the source is under
// admission control), a shutdown error when the pipeline is stopping.
// Under overflow block a full next queue makes Emit and Flush wait for
// room (backpressure), until their ctx ends. Emit itself returns an error
// only when it fails at once (EmitTo an unknown route); the event is then
// finished too. A stage with no next stage finishes emitted events with
// Done(nil): the end of the pipeline.
//
// The ctx given to Emit and Flush bounds that wait: a handler passes the
// ctx Handle got; a source passes a ctx of its own that ends when it is
// closed, never the ctx of Start, which only bounds starting.
type Emitter interface {
	Emit(ctx context.Context, ev *Event) error
	// EmitTo hands ev to the named next stage, which must be one of this
	// stage's declared routes (process.route uses it).
	EmitTo(ctx context.Context, next string, ev *Event) error
	// Flush hands over every event emitted since the last Flush: posts
	// them to queued stages and runs inline stages' handlers on them. A
	// source must call it after each read it emitted (or before it would
	// wait for input), or its events sit in the emitter; for a handler
	// the runtime calls it after each batch.
	Flush(ctx context.Context)
}

// Blocking runs fn; when ctx belongs to a stage worker (every Handle gets
// one), the worker gives up its run slot while fn runs, so another worker
// of the port may run: call blocking operations (database calls) this way.
func Blocking(ctx context.Context, fn func()) {
	if w, ok := ctx.Value(track.WorkerKey{}).(interface{ Blocking(func()) }); ok {
		w.Blocking(fn)
		return
	}
	fn()
}

// ReportAttempt tells the runtime how one attempt of a call to something
// outside the pipeline went (a database write, a publish to a queue): nil
// when it succeeded, the error when it failed. A handler that retries a
// failing call itself, inside one Handle, reports each attempt, so that
// the stage's health (/stats, /readyz, the dashboard) shows the outage
// while the batch is being retried: a stage whose attempts have failed
// for a few seconds with no success is down, with the last error. The
// pool controller never adds workers to a stage whose calls are failing,
// nor while a call has run far longer than calls take (a server that
// stopped answering).
//
// ctx is the one Handle or Start got (or one made from it): a Start that
// retries reaching its server reports its attempts too, so a stage that
// cannot start shows down. Handle's own result
// counts too: an error (other than of the busy, invalid, too large and
// database classes, which tell of records) is a failed attempt, nil a
// successful one; a handler that does not retry need not call
// ReportAttempt. It is cheap: a success while nothing failed costs an
// atomic load. Outside a handler's call it does nothing.
func ReportAttempt(ctx context.Context, err error) {
	if h, ok := ctx.Value(track.HealthKey{}).(interface{ Attempt(error) }); ok {
		h.Attempt(err)
	}
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
	// MaxWorkers is the most workers the stage's pool may have: Settings'
	// Workers when pinned; when auto, the most the pool controller gives
	// it. A handler that holds a resource per worker (db.postgres's
	// connections) sizes its pool for this many.
	MaxWorkers int
}
