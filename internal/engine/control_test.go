package engine

// This file tests the batching and pool controllers against model stages
// on a fake clock: convergence, noise, oscillation, load steps and pins.

import (
	"testing"
	"time"

	"github.com/stagedserver/seda/stats"
)

// The controllers on a fake clock, against model stages (see model). Each
// test states how fast a controller must settle, in simulated time; no
// test here reads the real clock.

// dbStage is a stage like db.postgres on a 2-core machine: a batch costs a
// little CPU per row and then waits on the database, 5 ms per commit plus
// 10 µs per row, and the database runs 4 statements at full speed at
// once. Service times vary by ±20%.
func dbStage(rate func(time.Duration) float64, seed int64) model {
	return model{capacity: 1024, conc: 2,
		cpuFixed: 20 * time.Microsecond, cpuPer: 2 * time.Microsecond,
		blockFixed: 5 * time.Millisecond, blockPer: 10 * time.Microsecond,
		units: 4, noise: 0.2, rate: rate, rng: newRand(seed)}
}

// bestPinned is the most throughput the model reaches with the batch at
// its ceiling and a pinned pool of 2 to 10 workers: what a person tuning
// it by hand would find.
func bestPinned(t *testing.T, mk func() model) (best float64, workers int) {
	t.Helper()
	for w := 2; w <= 10; w++ {
		m := newModel(mk(), AutoBatchCeiling(1024), false, w, false)
		m.run(10 * time.Second)
		if r := m.meanRate(2*time.Second, 10*time.Second); r > best {
			best, workers = r, w
		}
	}
	return best, workers
}

func logTrace(t *testing.T, m *model) {
	t.Helper()
	for _, d := range m.decisions {
		t.Logf("%6.2fs %s %v -> %v: %s", d.At.Sub(fakeEpoch).Seconds(), d.Knob, d.From, d.To, d.Reason)
	}
}

// Under a load beyond what two workers carry, the pool grows while its
// workers are blocked in the database and stops where more workers stop
// paying: within 3 s it reaches the best hand-tuned pool give or take a
// worker and keeps there at least 90% of the time (the rest is probes one
// worker further out, each undone within a second), and the stage runs at
// 95% or more of the best hand-tuned pool.
func TestControlConvergesOnBlockingStage(t *testing.T) {
	best, bestW := bestPinned(t, func() model { return dbStage(constRate(250000), 9) })
	for seed := int64(1); seed <= 3; seed++ {
		mk := func() model { return dbStage(constRate(250000), seed) }
		m := newModel(mk(), AutoBatchCeiling(1024), true, 2, true)
		m.run(40 * time.Second)
		lo, hi := m.span(workersOf, 10*time.Second, 40*time.Second)
		at := m.reached(workersOf, bestW-1, bestW+1)
		in := m.share(workersOf, bestW-1, bestW+1, 3*time.Second, 40*time.Second)
		got := m.meanRate(5*time.Second, 40*time.Second)
		t.Logf("seed %d: best pinned %.0f/s with %d workers; auto %.0f/s (%.2f), workers %d..%d after 10 s, within one of %d from %s, %.0f%% of the time from 3 s",
			seed, best, bestW, got, got/best, lo, hi, bestW, at, 100*in)
		if at < 0 || at > 3*time.Second || in < 0.9 {
			logTrace(t, m)
			t.Errorf("seed %d: the pool was within one worker of %d first at %s and %.0f%% of the time from 3 s; want within 3 s and 90%%", seed, bestW, at, 100*in)
		}
		if got < 0.95*best {
			logTrace(t, m)
			t.Errorf("seed %d: auto ran at %.0f/s, want at least 95%% of the best pinned %.0f/s", seed, got, best)
		}
		if lo < bestW-2 || hi > bestW+2 {
			logTrace(t, m)
			t.Errorf("seed %d: workers ranged %d..%d after 10 s, want within two of %d", seed, lo, hi, bestW)
		}
		if lo, _ := m.span(batchOf, time.Second, 40*time.Second); lo != AutoBatchCeiling(1024) {
			t.Errorf("seed %d: batch fell to %d under overload, want it at the ceiling", seed, lo)
		}
	}
}

// On a machine shared with other programs, whose speed swings by ±40%
// every 100 ms, noise does not pass for gains for long: a growth kept on
// noise is undone by the next trial of one worker fewer, so the pool
// wanders around the best size instead of creeping up (never more than 2
// above it) and runs at 90% or more of the best pinned throughput.
func TestControlNoisyMachine(t *testing.T) {
	mk := func(seed int64) model {
		m := dbStage(constRate(250000), seed)
		m.shared = 0.4
		return m
	}
	best, bestW := bestPinned(t, func() model { return mk(11) })
	for seed := int64(12); seed <= 14; seed++ {
		m := newModel(mk(seed), AutoBatchCeiling(1024), true, 2, true)
		m.run(120 * time.Second)
		lo, hi := m.span(workersOf, 5*time.Second, 120*time.Second)
		got := m.meanRate(5*time.Second, 120*time.Second)
		n := m.changes(stats.KnobWorkers, 10*time.Second)
		t.Logf("seed %d: best pinned %.0f/s with %d workers; auto %.0f/s (%.2f), workers %d..%d, %d changes after 10 s",
			seed, best, bestW, got, got/best, lo, hi, n)
		if hi > bestW+2 || got < 0.9*best || n > 30 {
			logTrace(t, m)
			t.Errorf("seed %d: workers %d..%d (best %d), %.0f/s (best %.0f/s), %d changes in 110 s: want at most 2 over the best, 90%% of its throughput, 30 changes at most",
				seed, lo, hi, bestW, got, best, n)
		}
	}
}

// At its useful limit a pool probes a worker further out now and then: one
// more, and when that did not pay one fewer. The probes back off (5 s, 10
// s, 20 s, ... up to 60 s), so over two minutes of steady overload the pool
// changes a bounded number of times, never by more than one worker from
// where it settled, and keeps its size at least 90% of the time.
func TestControlOscillationBounded(t *testing.T) {
	mk := dbStage(constRate(400000), 7)
	mk.units = 2 // the database saturates early
	m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
	m.run(150 * time.Second)
	lo, hi := m.span(workersOf, 30*time.Second, 150*time.Second)
	n := m.changes(stats.KnobWorkers, 30*time.Second)
	mode := m.mode(workersOf, 30*time.Second, 150*time.Second)
	in := m.share(workersOf, mode, mode, 30*time.Second, 150*time.Second)
	t.Logf("workers %d..%d over 30-150 s, at %d %.0f%% of the time, %d changes", lo, hi, mode, 100*in, n)
	if lo < mode-1 || hi > mode+1 || in < 0.9 {
		logTrace(t, m)
		t.Errorf("workers ranged %d..%d, at %d %.0f%% of the time; want within one worker of it and 90%%", lo, hi, mode, 100*in)
	}
	if n > 16 {
		logTrace(t, m)
		t.Errorf("%d pool changes in 120 s of steady load, want at most 16 (4 rounds of probes and their reverts)", n)
	}
	if bn := m.changes(stats.KnobBatch, 5*time.Second); bn != 0 {
		t.Errorf("batch changed %d times under steady overload", bn)
	}
}

// After a load step up the knobs follow within 3 s and the stage runs at
// 90% or more of the best pinned setting; after a step back down the batch
// shrinks within 5 s and idle workers retire one every 5 s, down to the
// run slots.
func TestControlRecoversAfterLoadStep(t *testing.T) {
	rate := func(t time.Duration) float64 {
		switch {
		case t < 10*time.Second:
			return 1000
		case t < 40*time.Second:
			return 250000
		}
		return 1000
	}
	best, _ := bestPinned(t, func() model { return dbStage(constRate(250000), 3) })
	m := newModel(dbStage(rate, 3), AutoBatchCeiling(1024), true, 2, true)
	m.run(80 * time.Second)
	if _, hi := m.span(batchOf, 5*time.Second, 10*time.Second); hi > 32 {
		t.Errorf("light load: batch %d after 5 s, want it shrunk to 32 or less", hi)
	}
	if got := m.meanRate(13*time.Second, 40*time.Second); got < 0.9*best {
		logTrace(t, m)
		t.Errorf("3 s after the step up: %.0f/s, want at least 90%% of the best pinned %.0f/s", got, best)
	}
	if _, hi := m.span(batchOf, 45*time.Second, 80*time.Second); hi > 32 {
		logTrace(t, m)
		t.Errorf("5 s after the step down: batch %d, want 32 or less", hi)
	}
	if w := m.trace[len(m.trace)-1].workers; w != 2 {
		logTrace(t, m)
		t.Errorf("40 s after the step down: %d workers, want the 2 run slots", w)
	}
}

// A stage that never blocks gains nothing from workers beyond its run
// slots and gets none, however deep its queue.
func TestControlCPUStageGetsNoWorkers(t *testing.T) {
	mk := dbStage(constRate(1e6), 1)
	mk.blockFixed, mk.blockPer, mk.cpuPer = 0, 0, 5*time.Microsecond
	m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
	m.run(30 * time.Second)
	if n := m.changes(stats.KnobWorkers, 0); n != 0 {
		logTrace(t, m)
		t.Errorf("the pool of a stage that never blocks changed %d times", n)
	}
}

// A pinned knob never moves: not under overload, not under light load, not
// after a step.
func TestControlPinnedNeverMoves(t *testing.T) {
	rate := stepRate(250000, 500, 20*time.Second)
	m := newModel(dbStage(rate, 5), 200, false, 4, false)
	m.run(60 * time.Second)
	if len(m.decisions) != 0 {
		logTrace(t, m)
		t.Fatalf("%d decisions about pinned knobs", len(m.decisions))
	}
	for _, p := range m.trace {
		if p.batch != 200 || p.workers != 4 {
			t.Fatalf("at %s: batch %d workers %d, pinned at 200 and 4", p.t, p.batch, p.workers)
		}
	}
	// One knob pinned, the other auto: only the auto one moves.
	m = newModel(dbStage(rate, 5), 200, false, 2, true)
	m.run(60 * time.Second)
	if n := m.changes(stats.KnobBatch, 0); n != 0 {
		t.Errorf("pinned batch changed %d times", n)
	}
	if n := m.changes(stats.KnobWorkers, 0); n == 0 {
		t.Errorf("the auto pool never changed under overload")
	}
}

// Handing a knob back (pin(0)) lets the controller move it again from
// where it is; pinning it stops the controller at once, even in the middle
// of judging a growth.
func TestControlPinAndRelease(t *testing.T) {
	m := newModel(dbStage(constRate(250000), 2), AutoBatchCeiling(1024), true, 2, true)
	for m.ctl.trial == nil { // until the first growth is being judged
		if m.now >= 3*time.Second {
			t.Fatal("expected a growth waiting for its verdict")
		}
		m.run(m.now + ControlSample)
	}
	pinned := m.now
	m.ctl.workers.pin(3)
	m.ctl.trial = nil // as control.dropProbe does
	m.apply(stats.Decision{Knob: stats.KnobWorkers, To: 3})
	m.run(10 * time.Second)
	if n := m.changes(stats.KnobWorkers, pinned+time.Millisecond); n != 0 {
		t.Fatalf("pinned pool changed %d times", n)
	}
	m.ctl.workers.pin(0)
	m.run(20 * time.Second)
	if m.live() <= 3 {
		logTrace(t, m)
		t.Fatalf("released pool stayed at %d under overload", m.live())
	}
}

// A stage whose batches each wait longer than a decision window (a
// database that sleeps 600 ms per statement, as the e2e test's does with
// a trigger) takes fewer batches than there are windows: with two workers
// some windows take none while the queue stays full. Such a window is not
// idleness (the workers were all inside batches, none waiting for work),
// so it does not restart the controller's measurement: the pool grows past
// its run slots within 10 s, and more workers carry more.
func TestControlGrowsOnBatchesLongerThanWindow(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		mk := model{capacity: 8192, conc: 2,
			cpuFixed: 20 * time.Microsecond, cpuPer: 2 * time.Microsecond,
			blockFixed: 600 * time.Millisecond,
			noise:      0.2, rate: constRate(100000), rng: newRand(seed)}
		m := newModel(mk, AutoBatchCeiling(8192), true, 2, true)
		m.run(10 * time.Second)
		if _, hi := m.span(workersOf, 0, 10*time.Second); hi <= 2 {
			logTrace(t, m)
			t.Errorf("seed %d: the pool stayed at %d workers for 10 s while every batch waited 600 ms on the database", seed, hi)
		}
	}
}
