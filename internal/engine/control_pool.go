package engine

// This file holds a stage's pool of workers and how it is resized while
// the stage runs.

import (
	"context"
	"sync"
	"sync/atomic"
)

// pool is a stage's set of workers, resized while the stage runs. A worker
// is retired by ending the context it takes batches with: a parked worker
// leaves at once, a busy one when it comes back for its next batch, so
// nothing it holds is interrupted.
type pool struct {
	mu     sync.Mutex
	ctx    context.Context      // the workers' context; Abort ends it
	retire []context.CancelFunc // one per live worker, oldest first
	closed bool                 // CloseQueue or Abort: no more workers
	n      atomic.Int64         // len(retire), read by Stats without the lock
}

// startPool starts the stage's initial workers under ctx: as many as the
// controller has now, which an operator may have set (pinned) while the
// stage was starting, or else its settings' count. An operator's count
// set before the pool had a context started no workers (resizePool), and
// was lost.
func (s *Stage) startPool(ctx context.Context) {
	s.pool.mu.Lock()
	s.pool.ctx = ctx
	s.pool.mu.Unlock()
	c := s.ctl
	if c == nil {
		s.resizePool(s.set.Workers)
		return
	}
	c.mu.Lock() // as setWorkers: one count wins, and it is the pool's
	defer c.mu.Unlock()
	s.resizePool(c.c.workers.now)
}

// resizePool starts or retires workers until n are live. It does nothing
// once the pool is closed.
func (s *Stage) resizePool(n int) {
	p := &s.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.ctx == nil {
		return
	}
	for len(p.retire) < n {
		take, cancel := context.WithCancel(p.ctx)
		w := s.port.Join()
		s.wg.Add(1)
		go s.work(p.ctx, take, w)
		p.retire = append(p.retire, cancel)
	}
	for len(p.retire) > n {
		last := len(p.retire) - 1
		p.retire[last]()
		p.retire[last] = nil
		p.retire = p.retire[:last]
	}
	p.n.Store(int64(len(p.retire)))
}

// closePool stops all resizing; the live workers run on until the port is
// closed and drained, or until Abort.
func (s *Stage) closePool() {
	s.pool.mu.Lock()
	s.pool.closed = true
	s.pool.mu.Unlock()
}

// workersNow returns the live workers.
func (s *Stage) workersNow() int { return int(s.pool.n.Load()) }
