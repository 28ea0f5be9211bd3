package stats

// This file holds Fates: what became of the events of a pipeline's
// sources, by fate, as the shutdown report counts them.

import "fmt"

// Fates count a pipeline's source events by what became of them, with the
// records its sources' doors refused (SourceRuntime.Admit: past
// memory_limit, admission control, a full queue under reject), of which
// no event was made, by the fate of a busy refusal. The pipeline's
// StopReport counts those finished (or abandoned) while it stopped: the
// events in flight when the stop began and those read while its sources
// stopped taking input, and the records their doors refused meanwhile.
// Each event, and each record refused at a door, is in exactly one count.
type Fates struct {
	// Stored counts events finished without an error: durable downstream
	// (or deliberately dropped) and acked to their origin, as far as the
	// origin could still be told.
	Stored uint64 `json:"stored"`
	// Redelivered counts events the transport delivers again later:
	// those of a NATS consumer NAKed, or not acked when the stop cut the
	// drain short (JetStream redelivers them after ack_wait).
	Redelivered uint64 `json:"redelivered"`
	// Lost counts events refused or abandoned, and records refused at
	// the door, whose source told nobody: netio's ack: none and UDP, and
	// sources that do not say.
	Lost uint64 `json:"lost"`
	// Resend counts events refused or abandoned, and records refused at
	// the door, whose client was told (nacked, answered with an HTTP
	// error) or sees its connection close with them unacked: the client
	// is to send them again.
	Resend uint64 `json:"resend"`
	// DeadLettered counts events set aside in a dead-letter stream
	// (NATS: refused for good).
	DeadLettered uint64 `json:"dead_lettered,omitempty"`
}

// Add returns f plus g, count by count.
func (f Fates) Add(g Fates) Fates {
	return Fates{Stored: f.Stored + g.Stored, Redelivered: f.Redelivered + g.Redelivered,
		Lost: f.Lost + g.Lost, Resend: f.Resend + g.Resend, DeadLettered: f.DeadLettered + g.DeadLettered}
}

// Sub returns f minus an earlier reading g of the same counters, count by
// count (0 where g is larger).
func (f Fates) Sub(g Fates) Fates {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Fates{Stored: sub(f.Stored, g.Stored), Redelivered: sub(f.Redelivered, g.Redelivered),
		Lost: sub(f.Lost, g.Lost), Resend: sub(f.Resend, g.Resend), DeadLettered: sub(f.DeadLettered, g.DeadLettered)}
}

// Total returns the number counted: events finished or abandoned, and
// records refused at the door.
func (f Fates) Total() uint64 {
	return f.Stored + f.Redelivered + f.Lost + f.Resend + f.DeadLettered
}

// String says the counts in one line: "1200 stored, 0 redelivered later
// (NATS), 3 lost (ack: none), 17 left for clients to resend", with ", N
// dead-lettered (NATS)" when there are any.
func (f Fates) String() string {
	s := fmt.Sprintf("%d stored, %d redelivered later (NATS), %d lost (ack: none), %d left for clients to resend",
		f.Stored, f.Redelivered, f.Lost, f.Resend)
	if f.DeadLettered > 0 {
		s += fmt.Sprintf(", %d dead-lettered (NATS)", f.DeadLettered)
	}
	return s
}
