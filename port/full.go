package port

// This file holds what says a queue is full: the room Post looks for
// (in packets and in bytes), and the hints Full and FullAt.

import "math"

// Full reports whether a Post would find no room right now: the queue is
// at capacity (in packets, or in bytes with Options.MaxBytes), or Posts
// are waiting for room. It is a hint for shedding
// load early (before doing work whose result the queue would refuse); the
// answer may be stale as soon as it returns.
func (p *Port[T]) Full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.roomLocked() || p.posters.len > 0
}

// FullAt is Full, or the queue holds n packets or more (n > 0): a hint for
// shedding load once a queue is as deep as its consumer can work off in
// the time allowed.
func (p *Port[T]) FullAt(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.roomLocked() || p.posters.len > 0 || (n > 0 && p.depth >= n)
}

// maxBytes is Options.MaxBytes as given: 0 for no bound.
func (p *Port[T]) maxBytes() int64 {
	if p.byteLimit == math.MaxInt64 {
		return 0
	}
	return p.byteLimit
}

// roomLocked reports whether the queue has room for one more packet:
// fewer than Capacity packets and fewer than MaxBytes bytes queued.
func (p *Port[T]) roomLocked() bool {
	return p.depth < len(p.ring) && p.bytes < p.byteLimit
}
