package engine

// This file holds the Lifecycle: what the stage's creator (the pipeline)
// starts, stops and resizes a stage with.

import "context"

// Lifecycle drives a stage: connecting it, starting it and stopping it in
// the order the pipeline's two-phase stop needs. NewHandlerStage and
// NewSourceStage return it to the stage's creator (pipeline.New); kinds
// never see it, so a kind cannot stop itself or another stage.
type Lifecycle struct{ s *Stage }

// Connect sets where the stage's events go: next for Emit, routes (which
// include next) for EmitTo. It must be called before Start.
func (l Lifecycle) Connect(next *Stage, routes map[string]*Stage) { l.s.connect(next, routes) }

// Start starts the stage: a handler's Start, then its pool; a source's
// Start. The workers run until CloseQueue and drain, or until Abort.
func (l Lifecycle) Start(ctx context.Context) error { return l.s.start(ctx) }

// StopInput stops a source's input (Source.StopInput); for other stages it
// does nothing.
func (l Lifecycle) StopInput(ctx context.Context) error {
	l.s.door.close() // a read held back by the memory limit goes on: it is emitted
	if l.s.src == nil {
		return nil
	}
	return l.s.stopInput(ctx)
}

// Drain waits for a source's events to finish and its completions to be
// written (Source.Drain); for other stages it does nothing.
func (l Lifecycle) Drain(ctx context.Context) error {
	if l.s.src == nil {
		return nil
	}
	return l.s.drain(ctx)
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

// Close releases the handler's resources (its Close) or closes the source.
func (l Lifecycle) Close() error { return l.s.close() }

// Queued returns how many events wait in the stage's port and, with
// shard_by, its mailboxes (0 for inline stages and sources).
func (l Lifecycle) Queued() int {
	if l.s.port == nil {
		return 0
	}
	return l.s.port.Stats().Depth + l.s.shardsQueued()
}

// IsSource reports whether the stage is driven by a Source.
func (l Lifecycle) IsSource() bool { return l.s.src != nil }

// Stage returns the stage l drives.
func (l Lifecycle) Stage() *Stage { return l.s }

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
