package port

// This file holds the run-slot limit: SetConcurrency and Concurrency.

import "runtime"

// SetConcurrency changes how many workers may hold a run slot at once; n
// <= 0 means runtime.GOMAXPROCS(0), as in Options. It never interrupts a
// worker. A higher limit releases parked workers to queued packets at
// once. A lower one takes effect the way a Windows completion port's does
// when its thread count is over the limit: workers that hold a slot keep
// it, and each one that comes back to Get, GetBatch or Leave gives its
// slot up without another worker being released, until fewer than n run.
func (p *Port[T]) SetConcurrency(n int) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conc = n
	p.dispatchLocked()
}

// Concurrency returns the port's run-slot limit.
func (p *Port[T]) Concurrency() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conc
}
