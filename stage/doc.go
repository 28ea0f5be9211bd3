// Package stage is a stage of a staged (SEDA) server: a handler with its
// own completion port and worker pool, and the Event that flows from stage
// to stage.
//
// A stage's workers are bound to its port (package port) with the stage's
// concurrency as the port's run-slot limit. Each worker takes up to `batch`
// events with GetBatch (waiting up to `linger` for the batch to fill) and
// calls the Handler. The handler hands events on with Emitter.Emit, which
// posts them to the next stage's port, or finishes them with Event.Done. An
// inline stage has no port and no pool: events emitted to it are collected
// and handed to its handler by the upstream worker, after the upstream
// handler returns (operator chaining), so a queue hop is paid only where
// work changes character.
//
// Event.Done is how completions travel back: it calls the event's
// Origin.To, which for a network source posts a completion packet to the
// source's own port, where the source turns it into an acknowledgement.
//
// Kinds of stage are registered in a Registry with a configuration spec
// (fields with type, default, required flag and a line of documentation),
// so that a loader can check a pipeline file and a linter can explain every
// field. Stage families (stages/netio, stages/process, stages/db) and
// embedding programs register their kinds the same way.
//
// Handlers that block (database calls) wrap the blocking call in Blocking,
// so that the worker gives up its run slot while it waits.
package stage
