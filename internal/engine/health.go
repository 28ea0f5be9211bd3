package engine

// This file holds a stage's health (ok, degraded, down) and the age of
// the oldest event in its hands: the figures that show a stall or an
// outage as it happens, when nothing finishes to be measured.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// The health rules. A stage's health is judged from the outcomes of its
// calls: each attempt a handler reports (stage.ReportAttempt: db.postgres
// at each try of a write, natsq's publisher at each publish), and each
// Handle call that returns an error not of a record's making (a class
// other than busy, invalid, too large or database; a panic). Handle
// returning nil is a success. The stage is
//
//   - down when its calls have failed with no success in between for
//     downAfter, and failures still come (within staleAfter) or a call
//     is still running (a batch being retried): the database is
//     unreachable;
//   - degraded while calls fail for less than downAfter, while calls
//     fail and succeed by turns (a failure within recentAfter), after
//     failures stopped coming with no success to say they are over
//     (staleAfter: nothing left to try), and while a handler call has
//     run for stallAfter or more;
//   - ok otherwise.
//
// downAfter is short enough that an operator sees an outage within
// seconds, and long enough that a lone retried error (a connection reset
// and a reconnect) is only "degraded". staleAfter keeps a stage that gave
// up (retry.max) and has nothing more to try from holding /readyz at 503
// for good: readiness that never comes back keeps away the traffic that
// would show the database is back.
const (
	downAfter   = 2 * time.Second
	recentAfter = 5 * time.Second
	staleAfter  = 30 * time.Second
	stallAfter  = 10 * time.Second
)

// health is a stage's health: the outcomes of its calls, judged by the
// rules above when read. Safe for concurrent use; a success while
// nothing failed costs one atomic load.
type health struct {
	failing atomic.Bool // failingSince != 0: a success takes the lock
	mu      sync.Mutex
	// failingSince is when the first failure since the latest success
	// came (track.Nanotime); 0: the latest outcome was a success.
	failingSince int64
	lastFail     int64 // the latest failure; 0: none yet
	lastErr      string
	failures     atomic.Uint64
	state        string // the state last judged, and since when
	since        int64
}

// Attempt records the outcome of one attempt: stage.ReportAttempt.
func (h *health) Attempt(err error) { h.report(track.Nanotime(), err) }

// report records an outcome at now.
func (h *health) report(now int64, err error) {
	if err == nil {
		if !h.failing.Load() {
			return
		}
		h.mu.Lock()
		h.failingSince = 0
		h.failing.Store(false)
		h.mu.Unlock()
		return
	}
	msg := stage.Redact(err.Error())
	h.failures.Add(1)
	h.mu.Lock()
	if h.failingSince == 0 {
		h.failingSince = now
		h.failing.Store(true)
	}
	h.lastFail, h.lastErr = now, msg
	h.mu.Unlock()
}

// isFailing reports whether a failure came after the latest success: what
// keeps the pool controller from growing the pool.
func (h *health) isFailing() bool { return h.failing.Load() }

// failureCount returns the failures so far.
func (h *health) failureCount() uint64 { return h.failures.Load() }

// judge returns the stage's health at now. callAge is how long the
// oldest handler call in progress has run (0: none), busy whether any
// is.
func (h *health) judge(now int64, callAge time.Duration, busy bool) stats.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	state, at, why := stats.HealthOK, now, ""
	switch {
	case h.failingSince != 0 && now-h.failingSince >= int64(downAfter) &&
		(now-h.lastFail < int64(staleAfter) || busy):
		state, at, why = stats.HealthDown, h.failingSince+int64(downAfter), h.lastErr
	case h.failingSince != 0:
		state, at, why = stats.HealthDegraded, h.failingSince, h.lastErr
		if now-h.lastFail >= int64(staleAfter) {
			at = h.lastFail + int64(staleAfter)
		}
	case h.lastFail != 0 && now-h.lastFail < int64(recentAfter):
		state, why = stats.HealthDegraded, "calls failed lately, the last: "+h.lastErr
	case callAge >= stallAfter:
		state, at = stats.HealthDegraded, now-int64(callAge-stallAfter)
		why = "a call has run for " + callAge.Round(100*time.Millisecond).String()
	case h.lastFail != 0:
		at = h.lastFail + int64(recentAfter)
	}
	if h.state != state {
		// The state changed since it was last judged: it did at at, or
		// at the latest now, and not before the previous change.
		h.state, h.since = state, min(max(at, h.since), now)
	}
	return stats.Health{State: state, Since: track.Epoch().Add(time.Duration(h.since)), Error: why, Failures: h.failures.Load()}
}

// healthCtx returns ctx carrying the health of the stage the emitter
// belongs to, for stage.ReportAttempt inside its handler's calls. It is
// made once per parent context (a worker's, or the source's an inline
// stage runs under), not once per call.
func (o *Outputs) healthCtx(ctx context.Context) context.Context {
	if o.hctxOf != ctx || o.hctx == nil {
		o.hctxOf, o.hctx = ctx, context.WithValue(ctx, track.HealthKey{}, &o.from.health)
	}
	return o.hctx
}

// failure reports whether err, returned by Handle, tells of a failing
// call rather than of the batch's records: not busy, invalid, too large
// or refused by the database, and not the stop's cancellation.
func failure(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && stage.ErrorClass(err) == stage.ClassOther
}

// ageInterval is how often an age tracker notes a checkpoint: the
// resolution of the ages it reports.
const ageInterval = 100 * time.Millisecond

// ages finds the age of the oldest unfinished item of a stream of items
// started and finished in about the order they started (a source's
// events; a stage's handler calls), without a record per item: every
// ageInterval the start of an item notes a checkpoint (how many items
// had started before it, and when). Items may finish in any order: with
// done of them finished, one of the first done+1 is unfinished, so the
// oldest unfinished item started no later than the first checkpoint
// noted at or after item done+1 started. The age is a lower bound, off
// by ageInterval at most while checkpoints are kept. The ring holds the
// checkpoints of items not known to be finished; when it is full (a
// stall of many intervals) new ones are dropped, which keeps the oldest.
type ages struct {
	started atomic.Uint64 // items started (a source counts its own)
	last    atomic.Int64  // when the latest checkpoint was noted

	mu         sync.Mutex
	ring       [128]checkpoint
	head, size int
}

// checkpoint is n items started before one that started at at (and,
// for a handler call, whose oldest event entered the queue at enq).
type checkpoint struct {
	n       uint64
	at, enq int64
}

// begin counts an item started at now, whose oldest event entered the
// queue at enq (a call's), and notes a checkpoint when one is due.
func (a *ages) begin(now, enq int64) {
	n := a.started.Add(1) - 1
	a.note(now, enq, n)
}

// note notes a checkpoint for an item started at now after n others,
// when ageInterval has passed since the last one.
func (a *ages) note(now, enq int64, n uint64) {
	if !a.due(now) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.due(now) {
		return
	}
	a.last.Store(now)
	if a.size == len(a.ring) {
		return
	}
	a.ring[(a.head+a.size)%len(a.ring)] = checkpoint{n: n, at: now, enq: enq}
	a.size++
}

// due reports whether a checkpoint is due at now: none was noted yet,
// or the last one is ageInterval old.
func (a *ages) due(now int64) bool {
	last := a.last.Load()
	return last == 0 || now-last >= int64(ageInterval)
}

// oldest returns the checkpoint that bounds the oldest unfinished item,
// given that done items have finished and started have started, read at
// now; ok is false when none is unfinished.
//
// When no checkpoint bounds it, every unfinished item started after the
// last checkpoint, whose own item has finished: checkpoints are noted as
// items start, so once none starts (every worker stuck in a call to a
// server that stopped answering) none would ever bound them, and a stall
// that began with short calls in flight would never show. So the read
// notes one itself: the unfinished items all started by now (item
// started-1 at the latest), which bounds their age from the next read on.
func (a *ages) oldest(done, started uint64, now int64) (checkpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.size > 0 && a.ring[a.head].n < done {
		a.head = (a.head + 1) % len(a.ring)
		a.size--
	}
	if done >= started {
		return checkpoint{}, false
	}
	if a.size == 0 {
		a.ring[a.head] = checkpoint{n: started - 1, at: now, enq: now}
		a.size = 1
		a.last.Store(now)
	}
	return a.ring[a.head], true
}

// beginCall notes a handler call starting at now on a batch whose oldest
// event entered the queue at enq.
func (s *Stage) beginCall(now, enq int64) { s.calls.begin(now, enq) }

// endCall notes a handler call that returned err at now after took ns
// and records its outcome in the stage's health.
func (s *Stage) endCall(ctx context.Context, now, took int64, err error) {
	s.callNanos.Add(uint64(max(took, 0)))
	s.callsDone.Add(1)
	switch {
	case err == nil:
		s.health.report(now, nil)
	case failure(ctx, err):
		s.health.report(now, err)
	}
}

// healthStats fills in the stage's health and the age of its oldest
// unfinished event: for a source, of the events it made, from read; for a
// handler stage, of the events in its calls, from entering its queue.
func (s *Stage) healthStats(st *stats.Stage) {
	var callAge time.Duration
	busy := false
	// now is read after the counts: a bound oldest notes at now covers
	// only items that had started by then.
	var now int64
	if s.handler == nil { // a source (maybe one a program feeds itself: no src)
		done, made := s.h.Completed(), s.h.Created()
		now = track.Nanotime()
		if c, ok := s.calls.oldest(done, made, now); ok {
			st.Latency.OldestMs = msSince(now, c.at)
		}
	} else {
		done := s.callsDone.Load()
		started := s.calls.started.Load()
		now = track.Nanotime()
		busy = started > done
		if c, ok := s.calls.oldest(done, started, now); ok {
			callAge = time.Duration(now - c.at)
			st.Latency.OldestMs = msSince(now, c.enq)
		}
	}
	st.Health = s.health.judge(now, callAge, busy)
}

// msSince returns the milliseconds from t to now; 0 when t is unset (0)
// or not before now. t may be negative: a time before the process began.
func msSince(now, t int64) float64 {
	if t == 0 || t >= now {
		return 0
	}
	return float64(now-t) / 1e6
}
