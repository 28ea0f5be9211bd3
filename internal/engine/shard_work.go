package engine

// This file holds the worker loop of a stage with shard_by: taking events
// from the port into the mailboxes, and batches from the mailboxes to the
// handler (see shards).

import (
	"context"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// workSharded is work for a stage with shard_by. A worker alternates
// between two roles. Holding a run slot, it claims runnable shards, runs
// the handler on what it took, and releases them, for as long as there are
// runnable shards. Then it gives its slot up and waits for the intake;
// holding it, it takes a batch from the port (GetBatch: its run slot comes
// with it, as for any worker), puts the events into their mailboxes and
// gives the intake back, and goes on claiming.
//
// Workers are interchangeable claimers, so the pool may grow and shrink
// (retire) at any time without breaking the order of a key: a retired
// worker first handles what is runnable (so no runnable shard is left
// without a worker that will claim it), then leaves. The worker that makes
// a shard runnable (by putting events into it, or releasing it with events
// left) always claims again before it waits for the intake, so runnable
// shards never wait while every worker waits for the intake.
func (s *Stage) workSharded(ctx, take context.Context, w *port.Worker[*stage.Event]) {
	sh := s.shards
	var buf []port.Packet[*stage.Event]
	var batch []*stage.Event
	var held, idx []uint8
	var key []byte
	out := s.NewEmitter()
	slot := false // holds a run slot: may handle what is in the mailboxes
	for {
		if size := int(s.batchNow.Load()); size != len(buf) {
			if size > cap(buf) {
				buf = make([]port.Packet[*stage.Event], size)
				batch = make([]*stage.Event, size)
				idx = make([]uint8, size)
			}
			buf, batch, idx = buf[:size], batch[:size], idx[:size]
		}
		if ctx.Err() != nil {
			return
		}
		if slot {
			var n int
			n, held = sh.claim(batch, held[:0])
			if n > 0 {
				s.batches.Add(1)
				if n == len(batch) {
					s.fullBatches.Add(1)
				}
				s.run(ctx, batch[:n], out)
				sh.release(held)
				clear(batch[:n])
				continue
			}
			// Nothing runnable: give the run slot up (a GetBatch that
			// takes nothing), so that the intake's GetBatch may have it.
			_, _ = w.GetBatch(sh.done, buf[:1])
			slot = false
		}
		if take.Err() != nil {
			return // retired, with nothing runnable left behind
		}
		room := sh.enter(take, bound(len(buf), s.set.Capacity))
		if room == 0 {
			return
		}
		n, err := w.GetBatch(take, buf[:min(room, len(buf))])
		if err != nil {
			sh.leave()
			// Closed and drained, aborted, or retired. What the
			// mailboxes hold is held by workers that will claim it on
			// their release, or is runnable and claimed by the worker
			// that made it so.
			return
		}
		slot = true
		if n < len(buf) && n < room && s.set.Linger > 0 {
			n = s.linger(ctx, take, w, buf[:min(room, len(buf))], n)
		}
		for i := range buf[:n] {
			batch[i] = buf[i].Value
			idx[i], key = sh.index(batch[i], key)
		}
		sh.put(batch[:n], idx[:n])
		sh.leave()
		clear(buf[:n])
		clear(batch[:n])
	}
}
