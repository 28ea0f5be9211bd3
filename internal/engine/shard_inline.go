package engine

// This file holds shard_by on an inline stage: per-shard locks that the
// upstream workers calling it take, in a fixed order.

import (
	"context"
	"math/bits"
	"sync"

	"github.com/stagedserver/seda/stage"
)

// shardLocks are an inline stage's shards. An inline stage has no port
// and no mailboxes: its upstream workers call it, each with the events it
// emitted. The worker holds the locks of its batch's shards while the
// handler runs and its emitter flushes, so that at most one upstream
// worker at a time handles a shard's events; it takes them in ascending
// shard order, so two workers never wait for each other's.
type shardLocks [ShardCount]sync.Mutex

// shardScratch is an emitter's buffers for hashing the keys of the events
// it hands to an inline stage with shard_by.
type shardScratch struct {
	key []byte
	idx []uint8
}

// runInline runs the inline stage's handler on evs for an upstream
// worker (see Outputs.Flush): under the locks of their shards when the
// stage has shard_by.
func (s *Stage) runInline(ctx context.Context, evs []*stage.Event, out *Outputs) {
	sh := s.shards
	if sh == nil {
		s.run(ctx, evs, out)
		return
	}
	sc := &out.keys
	sc.idx = sc.idx[:0]
	var set [ShardCount / 64]uint64
	for _, ev := range evs {
		var k uint8
		k, sc.key = sh.index(ev, sc.key)
		sc.idx = append(sc.idx, k)
		set[k/64] |= 1 << (k % 64)
	}
	sh.note(sc.idx)
	held := 0
	for w, word := range set {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			s.locks[w*64+b].Lock()
			held++
		}
	}
	sh.holding(held)
	defer func() {
		sh.holding(-held)
		for w, word := range set {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				s.locks[w*64+b].Unlock()
			}
		}
	}()
	s.run(ctx, evs, out)
}
