// Package track is the bookkeeping an event shares with the stages that
// hold it: who holds it now, which source made it and when, how many
// lives it has had, and each stage's counters of the events it finished.
// It is the bridge between the plugin API (package stage), where
// Event.Done and DoneAll work on it, and the runtime (internal/engine),
// which moves events and recycles them.
//
// An Event's first field is a State, unexported; the engine reaches it
// with one unsafe cast (*stage.Event to *State), as protobuf-go reaches a
// message's MessageState, and package stage tests that the field's
// offset is 0. Nothing here is exported outside the module, so the
// runtime can change its bookkeeping without changing the plugin API.
//
// A Holder is a stage as a holder of events. An event's owner is the
// Holder of the stage that holds it, or, once it is finished, that
// stage's done mark: one word serves both, so that Done is a single
// compare-and-swap and the stage that finished an event (and only that
// one) knows to recycle it.
package track
