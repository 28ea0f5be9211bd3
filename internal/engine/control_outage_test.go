package engine

// This file tests the pool controller against a database that fails or
// hangs, on the fake clock: the pool does not grow while its calls fail.

import (
	"testing"
	"time"

	"github.com/stagedserver/seda/stats"
)

// The pool controller against a database that stops answering, on the
// fake clock: workers blocked on a dead database look like workers
// waiting on a slow one (a full queue, every run slot free), but their
// calls fail, so the pool never grows while they do; once the database is
// back the pool sizes itself again.
func TestControlNoGrowthWhileCallsFail(t *testing.T) {
	const from, to = 20 * time.Second, 40 * time.Second
	for seed := int64(1); seed <= 3; seed++ {
		mk := dbStage(constRate(250000), seed)
		mk.down = func(t time.Duration) bool { return t >= from && t < to }
		m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
		m.run(70 * time.Second)
		atStart := 0
		for _, p := range m.trace {
			if p.t <= from {
				atStart = p.workers
			}
		}
		_, hi := m.span(workersOf, from, to)
		before := m.meanRate(10*time.Second, from)
		after := m.meanRate(55*time.Second, 70*time.Second)
		t.Logf("seed %d: %d workers when the database stopped, at most %d while it was down; %.0f/s before, %.0f/s from 15 s after it was back; %d failed attempts",
			seed, atStart, hi, before, after, m.failures)
		if m.failures == 0 {
			t.Fatalf("seed %d: no attempt failed: the outage was not simulated", seed)
		}
		if hi > atStart {
			logTrace(t, m)
			t.Errorf("seed %d: the pool grew from %d to %d workers while every call failed", seed, atStart, hi)
		}
		if after < 0.9*before {
			logTrace(t, m)
			t.Errorf("seed %d: after the outage the stage ran at %.0f/s, want at least 90%% of the %.0f/s before it", seed, after, before)
		}
	}
}

// The same outage with the failures hidden from the controller (what it
// saw before the rule): the pool grows against the dead database. This
// keeps the test above honest: its outage does tempt the controller.
func TestControlOutageTemptsGrowth(t *testing.T) {
	const from, to = 20 * time.Second, 40 * time.Second
	mk := dbStage(constRate(250000), 1)
	mk.down = func(t time.Duration) bool { return t >= from && t < to }
	m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
	m.hideFailures = true
	m.run(45 * time.Second)
	atStart := 0
	for _, p := range m.trace {
		if p.t <= from {
			atStart = p.workers
		}
	}
	if _, hi := m.span(workersOf, from, to); hi <= atStart {
		logTrace(t, m)
		t.Fatalf("with the failures hidden the pool stayed at %d..%d workers during the outage; the outage does not test the rule", atStart, hi)
	}
}

// The pool controller against a database cut off by the network: its
// calls neither fail nor finish (until write_timeout, a minute away), so
// nothing tells of a failure, and a worker added takes a batch before it
// hangs too, which looks like a gain. The calls' ages, as the runtime
// reads them, tell: the pool never grows while the oldest call has run
// far longer than calls take, and a growth tried before that shows (in
// the cut's first half second) is undone within a second.
func TestControlNoGrowthWhileCallsHang(t *testing.T) {
	// The cut falls at 20 offsets 17 ms apart: where it falls against
	// the calls' starts decides whether the ages' checkpoints bound the
	// calls it catches (see ages.oldest).
	for k := range 20 {
		seed := int64(1 + k%3)
		from := 20*time.Second + time.Duration(k)*17*time.Millisecond
		to := from + 20*time.Second
		mk := dbStage(constRate(250000), seed)
		mk.hang = func(t time.Duration) bool { return t >= from && t < to }
		m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
		m.run(70 * time.Second)
		atStart := 0
		for _, p := range m.trace {
			if p.t <= from {
				atStart = p.workers
			}
		}
		_, hi := m.span(workersOf, from+time.Second, to)
		grows := 0
		for _, d := range m.decisions {
			if at := d.At.Sub(fakeEpoch); d.Knob == stats.KnobWorkers && d.To > d.From && at >= from && at < to {
				grows++
			}
		}
		if grows > 1 {
			logTrace(t, m)
			t.Errorf("cut at %s, seed %d: %d growths tried while every call hung; want one at most, before the stall shows", from, seed, grows)
		}
		before := m.meanRate(10*time.Second, from)
		after := m.meanRate(55*time.Second, 70*time.Second)
		t.Logf("cut at %s, seed %d: %d workers when the network was cut, at most %d from a second after; %.0f/s before, %.0f/s from 15 s after it was back",
			from, seed, atStart, hi, before, after)
		if hi > atStart {
			logTrace(t, m)
			t.Errorf("cut at %s, seed %d: the pool grew from %d to %d workers while every call hung", from, seed, atStart, hi)
		}
		if after < 0.9*before {
			logTrace(t, m)
			t.Errorf("cut at %s, seed %d: after the cut the stage ran at %.0f/s, want at least 90%% of the %.0f/s before it", from, seed, after, before)
		}
	}
}

// The same cut with the calls' ages hidden from the controller (what it
// saw before the rule): the pool grows against the silent database. This
// keeps the test above honest.
func TestControlHangTemptsGrowth(t *testing.T) {
	const from, to = 20 * time.Second, 40 * time.Second
	mk := dbStage(constRate(250000), 1)
	mk.hang = func(t time.Duration) bool { return t >= from && t < to }
	m := newModel(mk, AutoBatchCeiling(1024), true, 2, true)
	m.hideCalls = true
	m.run(45 * time.Second)
	atStart := 0
	for _, p := range m.trace {
		if p.t <= from {
			atStart = p.workers
		}
	}
	if _, hi := m.span(workersOf, from, to); hi <= atStart {
		logTrace(t, m)
		t.Fatalf("with the calls' ages hidden the pool stayed at %d..%d workers during the cut; the cut does not test the rule", atStart, hi)
	}
}
