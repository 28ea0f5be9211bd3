package port

// Full reports whether a Post would find no room right now: the queue is
// at capacity, or Posts are waiting for room. It is a hint for shedding
// load early (before doing work whose result the queue would refuse); the
// answer may be stale as soon as it returns.
func (p *Port[T]) Full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.depth == len(p.ring) || p.posters.len > 0
}

// FullAt is Full, or the queue holds n packets or more (n > 0): a hint for
// shedding load once a queue is as deep as its consumer can work off in
// the time allowed.
func (p *Port[T]) FullAt(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.depth == len(p.ring) || p.posters.len > 0 || (n > 0 && p.depth >= n)
}
