package engine

// This file holds the rules of the batching and thread-pool controllers,
// as a pure function of samples.

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/stagedserver/seda/stats"
)

// This file holds the rules of a stage's two controllers, the batching
// controller and the thread-pool controller (Welsh, Culler, Brewer, SEDA,
// SOSP 2001, §4), as a pure function of samples: no goroutines and no
// clock of its own, so that tests drive it on a fake clock against a model
// stage. control_run.go feeds it the stage's real gauges; the package
// documentation and docs/DESIGN.md ("Adaptive control") explain the rules
// for users.

const (
	// ControlSample is how often a stage's control loop reads the gauges
	// of its port (depth, running, waiting, blocked) and its totals.
	ControlSample = 50 * time.Millisecond
	// controlWindow is the samples in one decision window (250 ms): a
	// decision is taken per window at most.
	controlWindow = 5

	// minAutoWorkersCeiling is the least ceiling of an auto pool: its
	// ceiling is 4× its run slots, and at least this.
	minAutoWorkersCeiling = 16

	// fullShare: a window in which at least this share of the batches
	// were full (the queue held a whole batch when a worker took it) asks
	// for bigger batches.
	fullShare = 0.5
	// lightRatio and lightWindows: the batch size halves once batches
	// have averaged at most 1/lightRatio of it for lightWindows windows in
	// a row, so it settles between 2× and 4× the batches the load brings.
	lightRatio   = 4
	lightWindows = 2
	// starvedShare: a pool grows when, in at least this share of a
	// window's samples, a batch was waiting while a run slot was free.
	starvedShare = 0.8
	// calmWindows: a pool tries one worker fewer after this many windows
	// (5 s) in a row in which no sample found a batch waiting with a run
	// slot free: the pool has kept up, so a worker of it had nothing to
	// add.
	calmWindows = 20

	// judgeWindows, judgeBatches, judgeMaxWindows: a change on trial is
	// judged on the throughput of the windows after it against that of
	// the windows before it since the previous change: at least
	// judgeWindows, and as many more (up to judgeMaxWindows, 2 s) as it
	// takes to count judgeBatches batches, since events are taken a batch
	// at a time (a window of a few batches of 4096 measures the rate to
	// within a batch: ±15%). The windows after are at least as many as
	// those before.
	judgeWindows    = 2
	judgeBatches    = 24
	judgeMaxWindows = 8
	// gainMin: a growth is kept when the stage then takes events at least
	// this much faster. A pool growth must also show at least a quarter
	// of the gain the added workers could bring at most (from n to m
	// workers: (m-n)/n), so that noise does not pass for a gain. A shrink
	// is kept when throughput falls by less than gainMin and the pool does
	// not fall behind (what would make it grow again).
	gainMin = 0.05
	// idealShare is that quarter.
	idealShare = 0.25
	// holdFirst and holdMax bound the pause (in windows) after a change
	// that did not pay: 5 s at first, doubling at each such change up to
	// 60 s, so that a knob at its useful limit probes past it rarely.
	holdFirst = 20
	holdMax   = 240
	// loadShift: a hold ends early when the throughput, smoothed over
	// about a second (loadSmooth per window), moves by more than this
	// share from where it was when the hold began: the load or the stage
	// changed, so the earlier verdict no longer holds. Smoothed, so that
	// the noise of a busy machine does not end holds window after window.
	loadShift  = 0.25
	loadSmooth = 0.2
	// stallFactor and stallFloor: the calls are stalled while the oldest
	// handler call in progress has run stallFactor times as long as calls
	// have taken lately (their mean, smoothed by loadSmooth per window),
	// and stallFloor at least: a database cut off by the network answers
	// nothing, and until write_timeout nothing fails. A stalled window
	// never grows the pool (a worker added would take a batch and hang
	// too, which looks like a gain), and a change on trial when the calls
	// stall is judged at once; one of the pool is then not kept if it
	// grew it, and kept if it shrank it.
	stallFactor = 8
	stallFloor  = 500 * time.Millisecond
	// noiseWindows: the noise of the throughput is the median relative
	// difference between consecutive windows in which no knob changed,
	// over the last noiseWindows such pairs (a median, so that a load
	// step counts once and is gone). A growth must beat twice the noise
	// of a mean over the windows judged (the noise of one window over the
	// square root of their count) to be kept, and a shrink may cost less
	// the noisier the machine, so that on a machine shared with other
	// programs noise does not pass for a gain.
	noiseWindows = 16
)

// sample is one reading of a stage: its port's gauges now and its running
// totals.
type sample struct {
	depth, capacity           int
	running, waiting, blocked int
	concurrency               int
	taken, batches, full      uint64 // totals: events taken, batches, batches the queue filled
	// failing: a call of the stage failed after its latest success (see
	// health.go); failures: the failed calls so far.
	failing  bool
	failures uint64
	// callAge: how long the oldest handler call in progress has run (0:
	// none); callsDone, callNanos: the calls finished so far and their
	// durations added up (see stalled).
	callAge              time.Duration
	callsDone, callNanos uint64
}

// hold is a pause in one direction of a knob after a change in that
// direction did not pay.
type hold struct {
	left    int     // windows before the knob may move this way again
	backoff int     // the pause after the next change that does not pay
	x       float64 // throughput when the pause began
}

// tick counts a window off the pause, and ends it when the throughput
// moved far from where it was when the pause began.
func (h *hold) tick(x float64) {
	if h.left == 0 {
		return
	}
	if h.x > 0 && (x > h.x*(1+loadShift) || x < h.x*(1-loadShift)) {
		h.left, h.backoff = 0, holdFirst
		return
	}
	h.left--
}

// failed starts a pause after a change that did not pay.
func (h *hold) failed(x float64) time.Duration {
	h.left, h.x = h.backoff, x
	h.backoff = min(2*h.backoff, holdMax)
	return time.Duration(h.left*controlWindow) * ControlSample
}

// knob is the state of one controlled knob.
type knob struct {
	name                string
	now, floor, ceiling int
	auto                bool
	up, down            hold
}

// pin makes the knob pinned at n (n > 0) or hands it back to its
// controller (n == 0), which goes on from where the knob is, brought into
// the controller's range: a pool pinned at 1 below its floor of 2 (its
// run slots) is 2 once auto, not "1 (auto, 2 to 16)".
func (k *knob) pin(n int) {
	if n == 0 {
		k.auto = true
		k.now = min(max(k.now, k.floor), max(k.ceiling, k.floor))
		k.up = hold{backoff: holdFirst}
		k.down = hold{backoff: holdFirst}
		return
	}
	k.auto, k.now = false, n
}

// trial is a change waiting for its verdict.
type trial struct {
	k       *knob
	from    int
	x       float64 // events per second before the change
	need    float64 // the least throughput after it that keeps it
	before  int     // windows x was measured over: the trial lasts as many at least
	after   span    // the windows since
	starved int     // samples since with a batch waiting and a run slot free
	windows int
	busy    bool // a shrink tried under load: judged on throughput alone
	stalled bool // the calls stalled in a window since
}

// span is what some windows took: events, batches, and how long.
type span struct {
	events, batches uint64
	elapsed         time.Duration
}

func (s span) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.events) / s.elapsed.Seconds()
}

func (s *span) add(o span) {
	s.events += o.events
	s.batches += o.batches
	s.elapsed += o.elapsed
}

// controller decides a stage's batch size and pool size from samples. Its
// zero value is not ready: newController sets the knobs up.
type controller struct {
	batch, workers knob

	// The window being gathered, which began at first.
	started    time.Time
	first      sample
	haveFirst  bool
	samples    int
	starved    int // samples with a batch waiting and a run slot free
	queued     int // samples with events in the queue
	blockedSum int
	failing    bool          // a sample found the calls failing, or a call failed
	stalled    bool          // a sample found the calls stalled (see stallFactor)
	callMean   time.Duration // how long calls took lately; 0: none finished yet

	trial       *trial                // the last change, judged by the windows after it
	light, calm int                   // windows in a row: light batches, the pool keeping up
	tryFewer    bool                  // a growth did not pay: try one worker fewer next
	hist        [judgeMaxWindows]span // the latest windows, newest first
	since       int                   // windows since the latest change (or the end of idleness)
	idle        bool                  // the latest window took no events, none waiting
	xSmooth     float64               // throughput smoothed over about a second
	diffs       [noiseWindows]float64 // relative differences of quiet consecutive windows
	ndiffs      int                   // diffs recorded so far
	quiet       int                   // windows in a row with no change
}

// newController returns a controller for knobs starting at batch and
// workers, each auto or pinned. An auto pool stays between workersFloor
// (the run slots) and workersCeiling; an auto batch between 1 and
// batchCeiling.
func newController(batch, batchCeiling int, batchAuto bool, workers, workersFloor, workersCeiling int, workersAuto bool) *controller {
	mk := func(name string, now, floor, ceiling int, auto bool) knob {
		return knob{name: name, now: now, floor: floor, ceiling: max(ceiling, floor), auto: auto,
			up: hold{backoff: holdFirst}, down: hold{backoff: holdFirst}}
	}
	return &controller{
		idle:    true,
		batch:   mk(stats.KnobBatch, batch, 1, batchCeiling, batchAuto),
		workers: mk(stats.KnobWorkers, workers, max(workersFloor, 1), workersCeiling, workersAuto),
	}
}

// observe adds one sample taken at now; once a window is full it decides,
// and returns the changes (one at most).
func (c *controller) observe(now time.Time, s sample) []stats.Decision {
	if !c.haveFirst {
		c.first, c.haveFirst, c.started = s, true, now
		return nil
	}
	c.samples++
	thr := max(1, min(c.batch.now, s.capacity/2))
	if s.depth >= thr && s.running < s.concurrency {
		c.starved++
	}
	if s.depth > 0 {
		c.queued++
	}
	c.blockedSum += s.blocked
	c.failing = c.failing || s.failing || s.failures != c.first.failures
	c.stalled = c.stalled || s.callAge >= max(stallFloor, stallFactor*c.callMean)
	if c.samples < controlWindow {
		return nil
	}
	w := window{
		elapsed: now.Sub(c.started),
		events:  s.taken - c.first.taken,
		batches: s.batches - c.first.batches,
		full:    s.full - c.first.full,
		samples: c.samples, starved: c.starved, queued: c.queued, blockedSum: c.blockedSum,
		threshold: thr, failing: c.failing, stalled: c.stalled,
	}
	if n := s.callsDone - c.first.callsDone; n > 0 {
		mean := time.Duration((s.callNanos - c.first.callNanos) / n)
		if c.callMean == 0 {
			c.callMean = mean
		} else {
			c.callMean += time.Duration(loadSmooth * float64(mean-c.callMean))
		}
	}
	c.first, c.started = s, now
	c.samples, c.starved, c.queued, c.blockedSum, c.failing, c.stalled = 0, 0, 0, 0, false, false
	d, ok := c.decide(w)
	if !ok {
		return nil
	}
	c.quiet, c.since = 0, 0
	d.At = now
	return []stats.Decision{d}
}

// window is what the samples of one decision window add up to.
type window struct {
	elapsed                      time.Duration
	events, batches, full        uint64
	samples, starved, blockedSum int
	queued                       int  // samples with events in the queue
	threshold                    int  // the depth that counts as a batch waiting
	failing                      bool // calls failed in the window, or were failing
	stalled                      bool // a call in progress ran far longer than calls take (stallFactor)
}

func (w window) rate() float64 {
	if w.elapsed <= 0 {
		return 0
	}
	return float64(w.events) / w.elapsed.Seconds()
}

// decide applies the rules to one window: first the verdict on a change
// on trial, then the batch, then the pool; one change at most.
func (c *controller) decide(w window) (stats.Decision, bool) {
	x := w.rate()
	prev := c.hist[0].rate()
	copy(c.hist[1:], c.hist[:])
	c.hist[0] = span{events: w.events, batches: w.batches, elapsed: w.elapsed}
	c.since++
	if c.xSmooth == 0 {
		c.xSmooth = x
	} else {
		c.xSmooth += loadSmooth * (x - c.xSmooth)
	}
	if c.trial != nil {
		c.quiet = 0 // a change is being judged: its windows are not noise
	}
	// The first window with events after an idle one (the stage's start,
	// or load after a pause) holds a burst: the workers took what had
	// queued up. It measures neither the stage nor the noise. A window
	// that took no events while some waited in the queue is not idle:
	// every worker was inside a batch longer than the window (with a
	// database slow per statement, two workers may take a batch per 300
	// ms, and windows are 250 ms); counted idle, it would restart the
	// measurement before any trial could begin.
	switch {
	case w.events == 0 && w.queued == 0:
		c.idle = true
	case w.events == 0:
	case c.idle:
		c.idle, c.since, c.quiet = false, 0, 0
	}
	if c.quiet++; c.quiet >= 2 && x+prev > 0 {
		c.diffs[c.ndiffs%noiseWindows] = math.Abs(x-prev) / ((x + prev) / 2)
		c.ndiffs++
	}
	if w.starved == 0 {
		c.calm++
	} else {
		c.calm = 0
	}
	for _, k := range []*knob{&c.batch, &c.workers} {
		k.up.tick(c.xSmooth)
		k.down.tick(c.xSmooth)
	}
	if t := c.trial; t != nil {
		t.after.add(c.hist[0])
		t.starved += w.starved
		t.stalled = t.stalled || w.stalled
		t.windows++
		if !t.stalled && (t.windows < max(judgeWindows, t.before) || (t.after.batches < judgeBatches && t.windows < judgeMaxWindows)) {
			return stats.Decision{}, false // nothing else moves while a change is judged
		}
		c.trial = nil
		if d, ok := c.judge(t); ok {
			return d, true
		}
	}
	if !c.measured() {
		return stats.Decision{}, false // too little seen since the last change to judge the next
	}
	if d, ok := c.decideBatch(w, x); ok {
		return d, true
	}
	return c.decidePool(w)
}

// measured says whether the windows since the latest change are enough to
// measure the throughput a trial is judged against: judgeWindows and
// judgeBatches, or judgeMaxWindows.
func (c *controller) measured() bool {
	var s span
	for _, h := range c.hist[:min(c.since, judgeMaxWindows)] {
		s.add(h)
	}
	return c.since >= judgeMaxWindows || (c.since >= judgeWindows && s.batches >= judgeBatches)
}

// judge keeps the change on trial, or reverts it and pauses changes of
// the knob in that direction.
func (c *controller) judge(t *trial) (stats.Decision, bool) {
	after := t.after.rate()
	k := t.k
	grew := k.now > t.from
	kept := after >= t.need && after > 0
	if !grew && !t.busy { // kept unless the pool falls behind: what would grow it again
		kept = after >= t.need && float64(t.starved) < starvedShare*float64(t.windows*controlWindow)
	}
	if t.stalled && k == &c.workers {
		// The calls stalled: what was taken measures nothing, and more
		// workers would only hang too.
		kept = !grew
	}
	// A change kept leaves the pauses as they are: at the pool's useful
	// limit a growth that fails, a shrink kept on noise and a growth
	// back are one round, and the pauses must lengthen from round to
	// round (they end early only when the load moves, see hold.tick).
	if kept || !k.auto { // or pinned meanwhile: the operator's value stands
		return stats.Decision{}, false
	}
	from := k.now
	k.now = t.from
	if grew {
		// n+1 did not pay; perhaps n does not either (an earlier growth
		// kept on noise): try n-1, so that the pool walks both ways.
		c.tryFewer = k == &c.workers
		pause := k.up.failed(c.xSmooth)
		if t.stalled && k == &c.workers {
			return stats.Decision{Knob: k.name, From: float64(from), To: float64(t.from),
				Reason: fmt.Sprintf("while growing %s from %d to %d was judged a call ran %d times as long as calls took lately (%s), and %s at least: the calls stalled, back to %d, no growth for %s",
					k.name, t.from, from, stallFactor, c.callMean.Round(time.Millisecond), stallFloor, t.from, pause)}, true
		}
		return stats.Decision{Knob: k.name, From: float64(from), To: float64(t.from),
			Reason: fmt.Sprintf("growing %s from %d to %d did not raise throughput enough (%.0f/s before, %.0f/s after, %.0f/s wanted): back to %d, no growth for %s",
				k.name, t.from, from, t.x, after, t.need, t.from, pause)}, true
	}
	pause := k.down.failed(c.xSmooth)
	return stats.Decision{Knob: k.name, From: float64(from), To: float64(t.from),
		Reason: fmt.Sprintf("with one worker fewer (%d) the stage fell behind (%.0f/s before, %.0f/s after, %.0f/s wanted; a batch waited with a run slot free in %d of %d samples): back to %d, no shrinking for %s",
			from, t.x, after, t.need, t.starved, t.windows*controlWindow, t.from, pause)}, true
}

// noise is the relative spread of the throughput from window to window.
func (c *controller) noise() float64 {
	n := min(c.ndiffs, noiseWindows)
	if n == 0 {
		return 0
	}
	d := append([]float64(nil), c.diffs[:n]...)
	sort.Float64s(d)
	return d[n/2]
}

// try puts a change of k from from to its value now on trial: it is kept
// when the throughput after it is at least (1+gain) times that before
// it. A growth (gain > 0) must also beat twice the noise of the mean; a
// shrink (gain < 0) may cost -gain less that noise, and nothing once the
// noise is as large.
func (c *controller) try(k *knob, from int, gain float64) *trial {
	// Before: the windows since the previous change, the newest
	// judgeWindows at least and as many more as judgeBatches takes.
	var before span
	n := 0
	for _, h := range c.hist[:min(max(c.since, 1), judgeMaxWindows)] {
		if h.elapsed <= 0 || (n >= judgeWindows && before.batches >= judgeBatches) {
			break
		}
		before.add(h)
		n++
	}
	noise := c.noise() / math.Sqrt(float64(max(n, 1)))
	if gain > 0 {
		gain = math.Max(gain, 2*noise)
	} else {
		gain = math.Min(0, gain+noise)
	}
	x := before.rate()
	c.since = 0
	c.trial = &trial{k: k, from: from, x: x, need: x * (1 + gain), before: n}
	return c.trial
}

// decideBatch: grow while the queue holds more than a batch (kept only if
// throughput rises); halve while batches stay far below the size (the
// queue holds less than a batch: light load).
func (c *controller) decideBatch(w window, x float64) (stats.Decision, bool) {
	k := &c.batch
	if !k.auto || w.batches == 0 {
		c.light = 0
		return stats.Decision{}, false
	}
	full := float64(w.full) / float64(w.batches)
	mean := float64(w.events) / float64(w.batches)
	switch {
	case full >= fullShare && k.now < k.ceiling && k.up.left == 0:
		c.light = 0
		from := k.now
		k.now = min(k.ceiling, 2*from)
		t := c.try(k, from, gainMin)
		return stats.Decision{Knob: stats.KnobBatch, From: float64(from), To: float64(k.now),
			Reason: fmt.Sprintf("%.0f%% of %d batches found the queue holding a whole batch: %d -> %d, kept if throughput rises from %.0f/s to %.0f/s",
				100*full, w.batches, from, k.now, t.x, t.need)}, true
	case full < fullShare && mean*lightRatio <= float64(k.now) && k.now > k.floor:
		if c.light++; c.light < lightWindows {
			return stats.Decision{}, false
		}
		c.light = 0
		from := k.now
		k.now = max(k.floor, from/2)
		return stats.Decision{Knob: stats.KnobBatch, From: float64(from), To: float64(k.now),
			Reason: fmt.Sprintf("batches averaged %.1f events of %d for %d windows (the queue holds less than a batch): %d -> %d",
				mean, from, lightWindows, from, k.now)}, true
	}
	c.light = 0
	return stats.Decision{}, false
}

// decidePool: grow while the queue holds a batch and a run slot is free
// (every worker is busy, some inside Blocking), kept only if throughput
// rises, unless the stage's calls are failing; try one worker fewer once
// the pool has kept up for a while, kept only if it still keeps up.
//
// Workers blocked on a database that fails every call look like workers
// waiting on a slow one, with a full queue behind them; more of them
// would be more connections to a server that is failing, so a window in
// which a call failed, or the calls were failing (no success since the
// last failure), never grows the pool.
func (c *controller) decidePool(w window) (stats.Decision, bool) {
	k := &c.workers
	if !k.auto {
		return stats.Decision{}, false
	}
	switch {
	case w.failing || w.stalled:
		return stats.Decision{}, false
	case float64(w.starved) >= starvedShare*float64(w.samples) && k.now < k.ceiling && k.up.left == 0:
		from := k.now
		k.now = min(k.ceiling, from+max(1, from/4))
		t := c.try(k, from, max(gainMin, idealShare*float64(k.now-from)/float64(from)))
		return stats.Decision{Knob: stats.KnobWorkers, From: float64(from), To: float64(k.now),
			Reason: fmt.Sprintf("in %d of %d samples %d or more events were queued while a run slot was free (%.1f of %d workers blocked on average): %d -> %d, kept if throughput rises from %.0f/s to %.0f/s",
				w.starved, w.samples, w.threshold, float64(w.blockedSum)/float64(w.samples), from, from, k.now, t.x, t.need)}, true
	case c.calm >= calmWindows && k.now > k.floor && k.down.left == 0:
		c.calm, c.tryFewer = 0, false
		from := k.now
		k.now = from - 1
		t := c.try(k, from, -gainMin)
		return stats.Decision{Knob: stats.KnobWorkers, From: float64(from), To: float64(k.now),
			Reason: fmt.Sprintf("for %s no batch waited for a worker: %d -> %d, kept if throughput stays above %.0f/s and the pool keeps up",
				time.Duration(calmWindows*controlWindow)*ControlSample, from, k.now, t.need)}, true
	case c.tryFewer && k.now > k.floor && k.down.left == 0:
		c.tryFewer = false
		from := k.now
		k.now = from - 1
		t := c.try(k, from, -gainMin)
		t.busy = true
		return stats.Decision{Knob: stats.KnobWorkers, From: float64(from), To: float64(k.now),
			Reason: fmt.Sprintf("a worker more did not pay; trying one fewer: %d -> %d, kept if throughput stays above %.0f/s",
				from, k.now, t.need)}, true
	}
	return stats.Decision{}, false
}
