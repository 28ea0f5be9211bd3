// Package stage is the plugin API of a staged (SEDA) server: what the
// author of a kind of stage writes against. A kind is registered in a
// Registry with its configuration spec (fields with type, default, range
// and a line of documentation) and a constructor; the pipeline builds
// stages from it, runs them and stops them, and this package holds none
// of that runtime.
//
// A kind is one of three things (Kind documents each constructor and
// every optional method a kind may have):
//
//   - a Handler: a processor or a sink. It gets batches of events and an
//     Emitter; it hands each event on (Emit) or finishes it (Event.Done,
//     or DoneAll for a committed batch). Handlers that block (database
//     calls) wrap the blocking call in Blocking, so that the worker gives
//     up its run slot while it waits.
//   - an Input: a source that reads records, one per Read, each with an
//     acknowledgement function. The runtime makes the events, emits and
//     flushes them, waits for them on drain, counts them and shuts the
//     input down; ErrEndOfInput ends a finite input, and with it the run.
//   - a Source: a source that runs its own machinery (listeners, ports,
//     per-connection acknowledgements) and uses its SourceRuntime to make
//     events, emit them, wait for them and admit them.
//
// docs/DESIGN.md ("Writing a kind") walks through the three contracts,
// and examples/ holds a file source and a JSON-lines sink written against
// this package and package pipeline alone.
//
// # Events
//
// An Event is one record: its payload, a sequence number, the Origin to
// tell when it is finished, and decoded fields. The fields are a short
// list of (name, Value) pairs: a Value holds text, a number or a boolean
// in three words without boxing, and its text may be a view of the
// payload, so a decoder sets a field without allocating. Field reads them
// as Go values, Value without copying; Set, SetValue and SetText write
// them. A decoder (a handler with Project) is told when its stage starts
// which fields the stages after it read, and sets only those.
//
// Events are recycled: once the handler that finished an event has
// returned, the runtime gives the event, its field list and their memory
// to a new record, so a record's event allocates nothing once the pool is
// warm. A second Done in the handler is still caught.
//
// Event.Done is how completions travel back: it calls the event's
// Origin.To, which for a network source records the verdict in the
// connection's window and wakes the goroutine that owns the connection,
// which writes the acknowledgement, as an IOCP server's write
// completions come back to the thread serving the connection.
//
// # Errors
//
// An error that finishes an event may carry a class (ErrBusy,
// ErrInvalid, ErrTooLarge, ErrDatabase; WithClass marks one), so that
// sources count their nacks by class and a client can tell a record worth
// resending from one that will never pass.
package stage
