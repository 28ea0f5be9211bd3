package engine

// This file holds a stage's control loop: sampling the port, applying the
// controllers' decisions and operators' changes, and their figures.

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
	"go.uber.org/zap"
)

// ErrNotResizable is returned when resizing a stage that has no pool of
// its own: an inline stage (it runs in its upstream stage's workers) or a
// source.
var ErrNotResizable = errors.New("no queue or pool of its own to resize")

// ErrStopping is returned when resizing a stage that is stopping: its
// pool drains as it is.
var ErrStopping = errors.New("stopping: its pool drains as it is")

// control is a stage's control loop: every ControlSample it reads the
// stage's gauges, feeds them to the controller and applies what it
// decides; it also applies operators' changes (SetBatch, SetWorkers,
// SetConcurrency) and keeps the last decision for /stats.
type control struct {
	s        *Stage
	stop     chan struct{}
	stopOnce sync.Once

	mu        sync.Mutex // guards c, last and decisions, and orders changes
	c         *controller
	last      stats.Decision
	decisions uint64
}

func newControl(s *Stage) *control {
	workers := s.set.Workers
	if s.set.AutoWorkers {
		workers = s.workersFloor(workers) // the run slots, or what the handler can use
	}
	c := newController(s.set.Batch, batchCeiling(s.set), s.set.AutoBatch,
		workers, s.workersFloor(s.set.Concurrency), s.workersCeiling(s.set.Concurrency), s.set.AutoWorkers)
	return &control{s: s, c: c, stop: make(chan struct{})}
}

// batchCeiling is the largest batch the batching controller gives a
// stage with settings set, as stage.Settings.WithDefaults starts an auto
// batch: its queue capacity, at most stage.MaxAutoBatch
// (stage.MaxAutoSinkBatch in a terminal stage).
func batchCeiling(set stage.Settings) int {
	return stage.Settings{Capacity: set.Capacity, Terminal: set.Terminal}.WithDefaults().Batch
}

// AutoBatchCeiling is batchCeiling for a stage that is not terminal and
// whose queue holds capacity events (capacity <= 0: the default).
func AutoBatchCeiling(capacity int) int {
	return batchCeiling(stage.Settings{Capacity: capacity})
}

// AutoWorkersCeiling is the most workers the pool controller gives a
// stage with conc run slots (conc <= 0: GOMAXPROCS): 4 per slot, and at
// least 16. A handler that holds a resource per worker (db.postgres's
// connections) sizes its pool for this many when its stage's workers are
// auto.
func AutoWorkersCeiling(conc int) int {
	if conc <= 0 {
		conc = runtime.GOMAXPROCS(0)
	}
	return max(4*conc, minAutoWorkersCeiling)
}

// workersCeiling is the most workers the pool controller gives the stage
// with conc run slots: AutoWorkersCeiling, and no more than the handler
// can use (a handler's stage.MaxWorkers, see stage.Kind).
func (s *Stage) workersCeiling(conc int) int {
	n := AutoWorkersCeiling(conc)
	if m := s.handlerMaxWorkers(); m > 0 {
		n = min(n, m)
	}
	return n
}

// workersFloor is the fewest workers the pool controller gives the stage
// with conc run slots, and the pool it starts with: a worker per slot,
// and no more than the handler can use. A handler with one connection
// (MaxWorkers 1) on a stage with GOMAXPROCS slots got as many workers at
// the start, each calling it at once, when only growth was capped.
func (s *Stage) workersFloor(conc int) int {
	if m := s.handlerMaxWorkers(); m > 0 {
		return min(conc, m)
	}
	return conc
}

// handlerMaxWorkers returns the most workers the handler can use at once
// (its MaxWorkers, see stage.Kind), or 0 for no limit.
func (s *Stage) handlerMaxWorkers() int {
	if l, ok := s.handler.(interface{ MaxWorkers() int }); ok {
		return max(l.MaxWorkers(), 0)
	}
	return 0
}

func (s *Stage) startControl() {
	if s.ctl == nil {
		return
	}
	s.wg.Add(1)
	go s.ctl.run()
}

func (s *Stage) stopControl() {
	if s.ctl != nil {
		s.ctl.stopOnce.Do(func() { close(s.ctl.stop) })
	}
}

func (c *control) run() {
	defer c.s.wg.Done()
	t := time.NewTicker(ControlSample)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.tick(now)
		}
	}
}

// tick takes one sample and applies the controller's decisions.
func (c *control) tick(now time.Time) {
	s := c.s
	ps := s.port.Stats()
	smp := sample{
		depth: s.waitingDepth(ps), capacity: ps.Capacity,
		running: ps.Running, waiting: ps.Waiting, blocked: ps.Blocked,
		concurrency: ps.Concurrency,
		taken:       s.in.Load(), batches: s.batches.Load(), full: s.fullBatches.Load(),
		failing: s.health.isFailing(), failures: s.health.failureCount(),
	}
	// Done before nanoseconds (endCall adds the nanoseconds first): a call
	// counted as finished is counted with its duration. (One that ends
	// between the loads adds its duration a window early.) Done before
	// started, so that none finished is counted as not started.
	smp.callsDone = s.callsDone.Load()
	smp.callNanos = s.callNanos.Load()
	started := s.calls.started.Load()
	nt := track.Nanotime() // after the counts: see healthStats
	if c, ok := s.calls.oldest(smp.callsDone, started, nt); ok {
		smp.callAge = time.Duration(nt - c.at)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.c.observe(now, smp) {
		c.apply(d)
	}
}

// apply carries a decision out and records it; c.mu is held.
func (c *control) apply(d stats.Decision) {
	switch d.Knob {
	case stats.KnobBatch:
		c.s.batchNow.Store(int64(d.To))
	case stats.KnobWorkers:
		c.s.resizePool(int(d.To))
	}
	c.record(d)
}

// record keeps d as the last decision and logs it at debug level; c.mu is
// held.
func (c *control) record(d stats.Decision) {
	if d.At.IsZero() {
		d.At = time.Now()
	}
	c.last = d
	c.decisions++
	c.s.log.Debug("stage "+d.Knob+" changed",
		zap.String("stage", c.s.set.Name), zap.String("knob", d.Knob),
		zap.Float64("from", d.From), zap.Float64("to", d.To), zap.String("reason", d.Reason))
}

// dropProbe forgets a growth of k that waits for its verdict: an operator
// took the knob over.
func (c *control) dropProbe(k *knob) {
	if c.c.trial != nil && c.c.trial.k == k {
		c.c.trial = nil
	}
	c.c.since = 0 // the windows before an operator's change measure another stage
}

// resizable returns the stage's control, or an error naming the stage when
// it has no pool to resize or is stopping.
func (s *Stage) resizable() (*control, error) {
	if s.ctl == nil {
		return nil, fmt.Errorf("stage %q: %w", s.set.Name, ErrNotResizable)
	}
	s.pool.mu.Lock()
	closed := s.pool.closed
	s.pool.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("stage %q: %w", s.set.Name, ErrStopping)
	}
	return s.ctl, nil
}

// setBatch pins the stage's batch size at n (1 to stage.MaxBatch), or with n == 0
// hands it back to the batching controller, which goes on from the size
// it has. Workers take the new size from their next batch on.
func (s *Stage) setBatch(n int) error {
	if n < 0 || n > stage.MaxBatch {
		return fmt.Errorf("stage %q: batch %d: want 1 to %d, or 0 (auto)", s.set.Name, n, stage.MaxBatch)
	}
	c, err := s.resizable()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := &c.c.batch
	from := k.now
	c.dropProbe(k)
	k.pin(n)
	s.batchNow.Store(int64(k.now))
	c.record(stats.Decision{Knob: stats.KnobBatch, From: float64(from), To: float64(k.now), Reason: operatorReason(n, "batching")})
	return nil
}

// setWorkers pins the stage's pool at n workers (1 to stage.MaxWorkers), or
// with n == 0 hands it back to the pool controller, which goes on from
// the size it has. Workers are added at once; a retired worker finishes
// the batch it holds and then leaves.
func (s *Stage) setWorkers(n int) error {
	if n < 0 || n > stage.MaxWorkers {
		return fmt.Errorf("stage %q: workers %d: want 1 to %d, or 0 (auto)", s.set.Name, n, stage.MaxWorkers)
	}
	c, err := s.resizable()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := &c.c.workers
	from := k.now
	c.dropProbe(k)
	k.pin(n)
	s.resizePool(k.now)
	c.record(stats.Decision{Knob: stats.KnobWorkers, From: float64(from), To: float64(k.now), Reason: operatorReason(n, "pool")})
	return nil
}

// setConcurrency sets the stage's run slots (its port's concurrency) to n
// (1 to stage.MaxWorkers). Nothing is interrupted: a lower limit takes
// effect as running workers come back for their next batch
// (port.Port.SetConcurrency). An auto pool never shrinks below its run
// slots (or what the handler can use, if fewer), and its ceiling follows
// them.
func (s *Stage) setConcurrency(n int) error {
	if n < 1 || n > stage.MaxWorkers {
		return fmt.Errorf("stage %q: concurrency %d: want 1 to %d", s.set.Name, n, stage.MaxWorkers)
	}
	c, err := s.resizable()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	from := s.port.Concurrency()
	s.port.SetConcurrency(n)
	c.c.workers.floor = s.workersFloor(n)
	c.c.workers.ceiling = max(s.workersCeiling(n), c.c.workers.now)
	c.record(stats.Decision{Knob: stats.KnobConcurrency, From: float64(from), To: float64(n), Reason: fmt.Sprintf("set by an operator to %d", n)})
	return nil
}

func operatorReason(n int, controller string) string {
	if n == 0 {
		return "handed back to the " + controller + " controller by an operator"
	}
	return fmt.Sprintf("pinned at %d by an operator", n)
}

// controlStats reports the knobs for Stats; nil for a stage without a
// pool of its own.
func (s *Stage) controlStats() *stats.Control {
	c := s.ctl
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, w := c.c.batch, c.c.workers
	cs := &stats.Control{
		Batch:     &stats.Knob{Now: int(s.batchNow.Load()), Auto: b.auto, Min: b.floor, Max: b.ceiling},
		Workers:   &stats.Knob{Now: s.workersNow(), Auto: w.auto, Min: w.floor, Max: w.ceiling},
		Decisions: c.decisions,
	}
	if c.decisions > 0 {
		cs.Last = &stats.LastDecision{Decision: c.last, AgeS: time.Since(c.last.At).Seconds()}
	}
	return cs
}
