package stage

// This file holds Fate: what becomes of a record that its source made an
// event of and that was not stored, for the shutdown report.

// Fate says what becomes of a record that is not stored: its event was
// finished with an error, or was still unfinished when a forced stop
// ended. A source says which with the optional method
//
//	Fate(err error) Fate
//
// on its Source or Input (see Kind), asked once per run of events
// finished with err (only when err is not nil), asked with ErrBusy for
// the records its door refused (SourceRuntime.Admit: memory_limit,
// admission control, a full queue under reject; no event was made of
// them), and asked with context.Canceled for the events a forced stop
// abandoned. A source
// without it is taken to tell nobody: its records are Lost.
type Fate uint8

// The fates of a record that is not stored.
const (
	// FateLost: nobody was told, so nobody sends it again (netio's ack:
	// none, UDP).
	FateLost Fate = iota
	// FateResend: the client was told (a nack, an HTTP error) or sees its
	// connection close with the record unacked, and is to send it again.
	FateResend
	// FateRedelivered: the transport delivers it again later by itself
	// (a JetStream message not acked, or NAKed).
	FateRedelivered
	// FateDeadLettered: it was set aside where an operator can find it
	// (natsq's dead-letter stream).
	FateDeadLettered
)
