package port

// This file holds posting a batch at once: PostBatch and TryPostBatch,
// which take the port's lock once for as many packets as fit.

import "context"

// PostBatch queues pks in order, as len(pks) Posts would, but takes the
// port's lock once for as many as fit and wakes waiting workers once, so a
// waiting worker is handed a whole batch. It returns how many packets were
// queued: pks[:n]. When the queue fills, the rest wait for room one by one
// under Overflow Block (still in order) and are refused under Overflow
// Reject (n < len(pks), ErrFull, each refusal counted as Rejected). Errors
// are those of Post: ErrClosed, ctx.Err().
func (p *Port[T]) PostBatch(ctx context.Context, pks []Packet[T]) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return p.postBatch(ctx, pks, p.overflow == Reject)
}

// TryPostBatch is PostBatch that never waits, whatever the Overflow: it
// queues as many of pks as fit, in order, and refuses the rest with
// ErrFull (counted as Rejected), as TryPost does one packet.
func (p *Port[T]) TryPostBatch(pks []Packet[T]) (int, error) {
	return p.postBatch(context.Background(), pks, true)
}

func (p *Port[T]) postBatch(ctx context.Context, pks []Packet[T], reject bool) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	n := 0
	if p.posters.len == 0 { // waiting posters go first
		fit := min(len(pks), len(p.ring)-p.depth)
		for n < fit && p.bytes < p.byteLimit {
			p.push(&pks[n], false)
			n++
		}
		p.dispatchLocked()
	}
	if n == len(pks) {
		p.mu.Unlock()
		return n, nil
	}
	if reject {
		p.rejected += uint64(len(pks) - n)
		p.mu.Unlock()
		return n, ErrFull
	}
	p.mu.Unlock()
	for ; n < len(pks); n++ {
		if err := p.Post(ctx, pks[n]); err != nil {
			return n, err
		}
	}
	return n, nil
}
