package stage

// This file holds the source side of the plugin API: the Input a common
// source writes, and the Source and SourceRuntime a network source
// writes against.

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// Input is the common case of a source: it reads records and nothing
// else. The runtime turns each record into an event, emits and flushes
// it, applies backpressure (while the next queue is full under overflow
// block, Read is not called again once a batch's worth of records
// waits), waits for what is in flight on drain,
// counts it in /stats and shuts it down; the Input is told how each
// record ended through the ack function Read returned with it. A kind
// offers one with Kind.NewInput. It is modelled on Redpanda Connect's
// service.Input.
//
// Connect is called once, before the first Read; its ctx bounds
// connecting only, and an error stops the pipeline from starting.
//
// Read returns the next record and the function to call once it is
// finished: with nil when it is durable downstream (or deliberately
// dropped), with the reason when it was refused (ErrBusy: the pipeline
// was full under overflow reject; ErrorClass names the others). ack may
// be nil when nobody needs to know; it is called once, from any
// goroutine, and must not block for long. The record is the event's
// payload, not copied: Read must not reuse its memory. Read is called
// from one goroutine at a time. Its ctx ends when the pipeline stops
// taking input (or is closed): Read then returns, with ctx.Err() or
// anything else. Read returns ErrEndOfInput when there is no more input:
// once every source of the pipeline has ended so and what they read is
// finished, pipeline.Run drains and returns nil. Any other error is
// logged and Read is called again, after a pause that grows to a second
// while the errors go on; so is a panic in Read, which is logged with its
// stack. A non-nil record returned with an error (ErrEndOfInput or
// another) is a record: as with io.Reader, it is emitted first, and
// acked as any other, and then the error is acted on. An ack returned
// with an error and no record is called at once, with that error.
//
// Close is called once, after every record read is finished and acked
// (or at once when the stop is forced); it releases what Connect took.
// When Connect fails, Close is not called: what it took before failing,
// it releases itself.
type Input interface {
	Connect(ctx context.Context) error
	Read(ctx context.Context) (record []byte, ack func(err error), err error)
	Close() error
}

// ErrEndOfInput is what Input.Read returns when the input is exhausted
// (the end of a file): the source has ended, and the pipeline's run ends
// once every source has (see SourceRuntime.EndInput).
var ErrEndOfInput = errors.New("end of input")

// Source is a source that does what Input leaves to the runtime itself:
// netio's listeners (their own ports and pools, per-connection acks,
// admission control) and natsq's consumer. Most sources are an Input.
//
// The pipeline drives a Source through four steps, each called once:
//
//   - Start begins taking input and returns once the source is ready (its
//     listener bound). ctx bounds starting only: a goroutine the source
//     starts must not use it (give it a context the source cancels in
//     Close). rt is the source's runtime: it makes events and emitters,
//     counts what is in flight, and applies admission control.
//   - StopInput stops taking new input (listeners close, reads stop) and
//     returns once every record already read has been emitted (flushed)
//     or refused, or with ctx.Err().
//   - Drain returns once every event the source made is finished and
//     what their completions owe is written (acks flushed), or with
//     ctx.Err(). It waits for the events with rt.WaitFinished, the one
//     way to wait for them; then it writes what it owes.
//   - Close releases everything and joins the source's goroutines. It is
//     called after Drain, or at once when the stop is forced (then
//     events may still be in flight; their completions come later or
//     never), or when Start failed (then StopInput and Drain are not
//     called): what a Start took before it failed, Close releases.
//
// A source makes an event per record with rt.NewEvent (or NewEventAt,
// with the time it read a buffer of records), whose Origin it usually
// is (a Completer: it learns how each record ended), and hands it on with
// an Emitter from rt.NewEmitter, one per goroutine, which it must Flush.
// A finite source calls rt.EndInput when its input is exhausted. Kind
// lists the optional methods a source may have (Addr, Figures, Fate).
type Source interface {
	Start(ctx context.Context, rt SourceRuntime) error
	StopInput(ctx context.Context) error
	Drain(ctx context.Context) error
	Close() error
}

// SourceRuntime is what a Source gets from the runtime when it starts:
// its stage's name, settings and logger, and the means to make events,
// hand them on, wait for them and admit them. It is deliberately narrow
// (as Benthos gives plugins a *service.Resources): a source cannot start,
// stop or reach into its stage or any other. Its methods are safe for
// concurrent use.
type SourceRuntime interface {
	// Name returns the stage's name.
	Name() string
	// Settings returns the stage's common knobs, defaults filled in: a
	// source with a pool of its own sizes it by Workers, Concurrency and
	// Capacity.
	Settings() Settings
	// Logger returns the stage's logger (never nil).
	Logger() *zap.Logger

	// NewEvent makes an event read now: owned by the source, with the
	// given origin, counted as in flight until Done. The payload is not
	// copied: ownership passes to the event, and the source must not
	// change or reuse that memory until the event is finished.
	NewEvent(payload []byte, seq uint64, origin Origin) *Event
	// NewEventAt is NewEvent for a record read at the given time: a
	// source that frames many records out of one read takes the clock
	// once per read and passes it here. The latency /stats shows for a
	// source is from then to the event's Done.
	NewEventAt(payload []byte, seq uint64, origin Origin, arrived time.Time) *Event
	// NewEmitter returns an emitter for one goroutine of the source (see
	// Emitter). Under admission control (StartAdmission) it never waits
	// for room: an event that finds the next queue full is refused busy
	// at once, as the door refuses records. It may be made before or
	// after StartAdmission.
	NewEmitter() Emitter
	// WaitFinished returns once every event the source made is finished
	// and its Origin told, or with an error wrapping ctx.Err() (saying
	// how many are left) when ctx ends first. Drain calls it; it is
	// signalled by the last Done, not polled.
	WaitFinished(ctx context.Context) error
	// EndInput says that the source's input is exhausted: once every
	// source of the pipeline has said so, pipeline.Run stops the pipeline
	// (drains it) and returns nil.
	EndInput()

	// StartAdmission puts the source under admission control with the
	// given p99 target from read to finish, and starts its controller
	// (Welsh and Culler's response-time controller), which stops when the
	// stage is closed. The source asks Admit for each read.
	StartAdmission(target time.Duration)
	// Admit says how many of n records read at now (the read's one clock
	// reading) may go in: all of them without admission control and
	// under the pipeline's memory limit, unless the first queue on the
	// source's way on (past inline stages) rejects on overflow and is
	// full, where they would be refused anyway: then none. The source
	// refuses the rest busy, at once, before making events of them. Past the memory limit
	// it admits none, or, under memory_limit's overflow block (and not
	// under admission control), it waits until the pipeline holds less,
	// or until the source stops taking input: the source has stopped
	// reading meanwhile. So a source asks it before making the events of
	// a read, holding no events it has not handed on.
	Admit(now time.Time, n int) int
	// AdmitAll is Admit for input that goes in whole or not at all, such
	// as an HTTP request's body: it admits all n records or none. Under
	// admission control it admits them while the rate has a token to
	// give, taking what it lacks on credit that the input after them
	// waits out, and input it refuses costs the rate nothing.
	AdmitAll(now time.Time, n int) bool
	// Hold counts n more bytes as held by ev, against the pipeline's
	// memory limit, until ev is finished: memory the event keeps
	// reachable besides its payload (NewEvent counts the payload), such
	// as the rest of a pooled read buffer its payload is a view of. Call
	// it before handing ev on.
	Hold(ev *Event, n int)
}
