package stage

// This file holds the knobs every stage has (Settings) and their
// defaults and bounds.

import (
	"runtime"
	"time"

	"github.com/stagedserver/seda/port"
)

// Settings are the knobs every stage has (the YAML's common fields).
type Settings struct {
	Name        string
	Kind        string
	Workers     int           // pool size; 0: auto, sized by the pool controller from Concurrency up
	Concurrency int           // the port's run-slot limit; 0 means GOMAXPROCS
	Capacity    int           // queue capacity; 0 means port.DefaultCapacity (DefaultSinkCapacity when Terminal)
	Overflow    port.Overflow // what a full queue does to a sender
	MaxBytes    int64         // the queue is full past these bytes of records too; 0: no bound in bytes
	Batch       int           // most events one worker takes at once; 0: auto, sized by the batching controller
	Linger      time.Duration // wait this long for a batch to fill
	Inline      bool          // no port, no pool: run in the upstream workers
	// ShardBy names fields (shard_by): events with equal values of them
	// are handled by one worker at a time, in the order the stage
	// received them (see docs/DESIGN.md, "shard_by").
	ShardBy []string
	// Terminal marks a stage that finishes events itself (a database
	// sink): its Out counts the events it finished without error, since it
	// hands nothing on.
	Terminal bool
	// AutoWorkers and AutoBatch say that Workers and Batch were left to
	// the controllers (they were 0). WithDefaults sets them and fills in
	// the sizes the controllers start from: Workers = Concurrency, Batch
	// = the batch ceiling: the capacity, at most MaxAutoBatch
	// (MaxAutoSinkBatch when Terminal; an auto batch starts there, as
	// SEDA's does: a size that the queue does not fill costs nothing
	// without linger, and the controller halves it while batches stay
	// small).
	AutoWorkers, AutoBatch bool
}

// WithDefaults returns s with the defaults of unset knobs filled in, as
// the stage will run with them.
func (s Settings) WithDefaults() Settings {
	if s.Concurrency <= 0 {
		s.Concurrency = runtime.GOMAXPROCS(0)
	}
	if s.Workers <= 0 {
		s.AutoWorkers = true
		s.Workers = s.Concurrency
	}
	if s.Capacity <= 0 {
		s.Capacity = port.DefaultCapacity
		if s.Terminal {
			s.Capacity = DefaultSinkCapacity
		}
	}
	if s.Batch <= 0 {
		s.AutoBatch = true
		s.Batch = min(s.Capacity, MaxAutoBatch)
		if s.Terminal {
			s.Batch = min(s.Capacity, MaxAutoSinkBatch)
		}
	}
	return s
}

// MaxAutoBatch is the most events the batching controller puts in a
// batch; a stage's own ceiling is also at most its queue capacity.
const MaxAutoBatch = 4096

// MaxAutoSinkBatch is MaxAutoBatch for a terminal stage (a database
// sink), and DefaultSinkCapacity its default queue capacity, room for two
// such batches as port.DefaultCapacity is for two of the others. A sink's
// batch is one write: a db.postgres batch is one COPY and one commit,
// and PostgreSQL pays about a millisecond per COPY of light rows (it
// makes and drops a tuple slot for each of the first thousand rows), so
// 4096-row COPYs cost it 1.4 µs per light row and 16384-row ones 1.0, as
// much as psql \copy (bench/RESULTS.md, B8 notes).
const (
	MaxAutoSinkBatch    = 16384
	DefaultSinkCapacity = 2 * MaxAutoSinkBatch
)

// Bounds of the common knobs: past them a typo (an extra zero) would cost
// memory (a port's ring, a worker's batch buffers) or goroutines.
const (
	MaxWorkers  = 1 << 16
	MaxCapacity = 1 << 24
	MaxBatch    = 1 << 16
)
