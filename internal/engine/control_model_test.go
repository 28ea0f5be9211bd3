package engine

// This file holds the model stage the controllers are tested against: a
// queue, a pool of workers and a shared database, on a fake clock.

import (
	"math/rand"
	"time"

	"github.com/stagedserver/seda/stats"
)

// model is a stage simulated on a fake clock, for testing the controllers:
// a bounded queue fed at a given rate, a pool of workers under a run-slot
// limit, and a handler whose batch takes CPU time (holding a run slot) and
// then blocking time (inside stage.Blocking, holding none). The blocking part
// runs on a shared resource (a database) with a number of parallel units:
// with more calls in flight than units, each progresses more slowly. The
// controller samples it every ControlSample, as the runtime does, and its
// decisions are applied as the runtime applies them.
type model struct {
	// The stage.
	capacity, conc int
	// The handler: a batch of n events takes cpuFixed + n*cpuPer of CPU,
	// then blockFixed + n*blockPer inside stage.Blocking.
	cpuFixed, cpuPer, blockFixed, blockPer time.Duration
	units                                  int     // the shared resource's parallel units; 0: unlimited
	noise                                  float64 // service times vary by up to ±noise at random
	// shared: the machine's speed changes every 100 ms by up to ±shared
	// at random, for every worker at once (other programs on the cores).
	shared float64
	speed  float64
	// The load: events per second offered at a time; what the full queue
	// cannot take is lost (counted in dropped).
	rate func(t time.Duration) float64
	// down, when set, says when the shared resource fails every call (a
	// database stopped): a worker inside Blocking then fails an attempt
	// and retries it after a backoff (100 ms, doubling to 5 s), as
	// db.postgres does, making no progress until an attempt succeeds.
	down func(t time.Duration) bool
	// hang, when set, says when the shared resource answers nothing (a
	// network partition): a worker inside Blocking makes no progress and
	// no attempt fails, until it is over.
	hang func(t time.Duration) bool

	rng     *rand.Rand
	ctl     *controller
	workers []*modelWorker
	batch   int
	now     time.Duration
	depth   int
	arrive  float64 // fractional arrivals carried to the next step
	taken   uint64
	batches uint64
	full    uint64
	dropped uint64
	// The calls' outcomes, as the runtime's health has them: a failure
	// after the latest success, and the failures so far.
	failing  bool
	failures uint64
	// hideFailures keeps them from the controller (for a test that shows
	// what it would do without them).
	hideFailures bool
	// The calls (a batch from taken to finished) as the runtime counts
	// them: finished, and their durations added up; hideCalls keeps the
	// calls' ages and durations from the controller.
	callsDone uint64
	callNanos time.Duration
	hideCalls bool
	calls     *ages // the calls' starts, for their age as the runtime reads it

	// What happened, for the checks.
	decisions []stats.Decision
	trace     []modelPoint // one per window
}

type modelPoint struct {
	t              time.Duration
	batch, workers int
	rate           float64 // events taken per second over the window
	offered        float64
	depth          int
}

type workerState int

const (
	parked workerState = iota
	onCPU
	inBlocking
)

type modelWorker struct {
	state       workerState
	left        time.Duration // work left in this state
	block       time.Duration // blocking work of the batch, after the CPU part
	retired     bool
	batchEvents int
	tries       int           // attempts failed in a row (down)
	callStart   time.Duration // when its batch was taken
	retryAt     time.Duration // when the next attempt is made, after a failure
}

// fakeEpoch is the fake clock's time zero.
var fakeEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// modelStep is the simulation's time step.
const modelStep = 200 * time.Microsecond

func newModel(m model, batch int, batchAuto bool, workers int, workersAuto bool) *model {
	if m.rng == nil {
		m.rng = rand.New(rand.NewSource(1))
	}
	m.batch = batch
	m.calls = new(ages)
	m.ctl = newController(batch, AutoBatchCeiling(m.capacity), batchAuto,
		workers, m.conc, max(4*m.conc, minAutoWorkersCeiling), workersAuto)
	for range workers {
		m.workers = append(m.workers, &modelWorker{})
	}
	return &m
}

func (m *model) vary(d time.Duration) time.Duration {
	if m.noise == 0 || d == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + m.noise*(2*m.rng.Float64()-1)))
}

// run simulates until the fake clock reads until.
func (m *model) run(until time.Duration) {
	nextSample := m.now
	windowStart, windowTaken, offered := m.now, m.taken, 0.0
	samples := 0
	for m.now < until {
		if m.now >= nextSample {
			for _, d := range m.ctl.observe(fakeEpoch.Add(m.now), m.sample()) {
				m.apply(d)
			}
			nextSample += ControlSample
			samples++
			if samples%controlWindow == 0 {
				el := (m.now - windowStart).Seconds()
				m.trace = append(m.trace, modelPoint{t: m.now, batch: m.batch, workers: m.live(),
					rate: float64(m.taken-windowTaken) / el, offered: offered / el, depth: m.depth})
				windowStart, windowTaken, offered = m.now, m.taken, 0
			}
		}
		if m.shared > 0 && m.now%(100*time.Millisecond) == 0 {
			m.speed = 1 + m.shared*(2*m.rng.Float64()-1)
		}
		// Arrivals.
		r := m.rate(m.now)
		offered += r * modelStep.Seconds()
		m.arrive += r * modelStep.Seconds()
		if n := int(m.arrive); n > 0 {
			m.arrive -= float64(n)
			room := m.capacity - m.depth
			if n > room {
				m.dropped += uint64(n - room)
				n = room
			}
			m.depth += n
		}
		// Work.
		blocked := 0
		for _, w := range m.workers {
			if w.state == inBlocking {
				blocked++
			}
		}
		speed := 1.0
		if m.units > 0 && blocked > m.units {
			speed = float64(m.units) / float64(blocked)
		}
		machine := 1.0
		if m.shared > 0 {
			machine = m.speed
		}
		speed *= machine
		for _, w := range m.workers {
			switch w.state {
			case onCPU:
				w.left -= time.Duration(machine * float64(modelStep))
				if w.left <= 0 {
					if w.block > 0 {
						w.state, w.left = inBlocking, w.block
					} else {
						m.finish(w)
					}
				}
			case inBlocking:
				if m.retrying(w) || (m.hang != nil && m.hang(m.now)) {
					continue
				}
				w.left -= time.Duration(speed * float64(modelStep))
				if w.left <= 0 {
					m.finish(w)
				}
			}
		}
		// Retired workers leave once they come back for work.
		live := m.workers[:0]
		for _, w := range m.workers {
			if !(w.retired && w.state == parked) {
				live = append(live, w)
			}
		}
		m.workers = live
		// Parked workers take batches, newest first, while slots are free.
		for i := len(m.workers) - 1; i >= 0 && m.depth > 0; i-- {
			w := m.workers[i]
			if w.state != parked || m.running() >= m.conc {
				continue
			}
			n := min(m.batch, m.depth)
			m.depth -= n
			m.taken += uint64(n)
			m.batches++
			if n == m.batch {
				m.full++
			}
			w.state, w.callStart = onCPU, m.now
			m.calls.begin(int64(m.now), 0)
			w.left = m.vary(m.cpuFixed + time.Duration(n)*m.cpuPer)
			w.block = m.vary(m.blockFixed + time.Duration(n)*m.blockPer)
			w.batchEvents = n
		}
		m.now += modelStep
	}
}

// retrying applies the outage to a worker inside Blocking: while the
// resource is down its attempts fail, one per backoff; the first attempt
// after it is back succeeds. It reports whether the worker makes no
// progress now.
func (m *model) retrying(w *modelWorker) bool {
	if w.tries > 0 && m.now < w.retryAt {
		return true // waiting to try again
	}
	if m.down != nil && m.down(m.now) {
		m.failures++
		m.failing = true
		w.retryAt = m.now + min(100*time.Millisecond<<min(w.tries, 6), 5*time.Second)
		w.tries++
		return true
	}
	if w.tries > 0 {
		w.tries = 0
		m.failing = false
	}
	return false
}

// finish ends a worker's call.
func (m *model) finish(w *modelWorker) {
	w.state = parked
	m.callsDone++
	m.callNanos += m.now - w.callStart
}

func (m *model) running() int {
	n := 0
	for _, w := range m.workers {
		if w.state == onCPU {
			n++
		}
	}
	return n
}

// live counts the workers not retired.
func (m *model) live() int {
	n := 0
	for _, w := range m.workers {
		if !w.retired {
			n++
		}
	}
	return n
}

func (m *model) sample() sample {
	s := sample{depth: m.depth, capacity: m.capacity, concurrency: m.conc,
		taken: m.taken, batches: m.batches, full: m.full}
	if !m.hideFailures {
		s.failing, s.failures = m.failing, m.failures
	}
	if !m.hideCalls {
		s.callsDone, s.callNanos = m.callsDone, uint64(m.callNanos)
		if c, ok := m.calls.oldest(m.callsDone, m.calls.started.Load(), int64(m.now)); ok {
			s.callAge = m.now - time.Duration(c.at)
		}
	}
	for _, w := range m.workers {
		switch w.state {
		case parked:
			if !w.retired {
				s.waiting++
			}
		case onCPU:
			s.running++
		case inBlocking:
			s.blocked++
		}
	}
	return s
}

// apply carries a decision out as the runtime does: a retired worker
// finishes its batch first; parked ones go first.
func (m *model) apply(d stats.Decision) {
	m.decisions = append(m.decisions, d)
	switch d.Knob {
	case stats.KnobBatch:
		m.batch = int(d.To)
	case stats.KnobWorkers:
		n := int(d.To)
		for m.live() < n {
			m.workers = append(m.workers, &modelWorker{})
		}
		for i := len(m.workers) - 1; i >= 0 && m.live() > n; i-- {
			if !m.workers[i].retired {
				m.workers[i].retired = true
			}
		}
	}
}

// changes counts the decisions about knob at or after from.
func (m *model) changes(knob string, from time.Duration) int {
	n := 0
	for _, d := range m.decisions {
		if d.Knob == knob && d.At.Sub(fakeEpoch) >= from {
			n++
		}
	}
	return n
}

// reached returns the first time knob is within [lo, hi], or -1.
func (m *model) reached(get func(modelPoint) int, lo, hi int) time.Duration {
	for _, p := range m.trace {
		if v := get(p); v >= lo && v <= hi {
			return p.t
		}
	}
	return -1
}

// share returns the share of the trace's points in [from, to) at which
// knob is within [lo, hi].
func (m *model) share(get func(modelPoint) int, lo, hi int, from, to time.Duration) float64 {
	in, n := 0, 0
	for _, p := range m.trace {
		if p.t >= from && p.t < to {
			n++
			if v := get(p); v >= lo && v <= hi {
				in++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return float64(in) / float64(n)
}

// mode returns the value knob held most often over [from, to).
func (m *model) mode(get func(modelPoint) int, from, to time.Duration) int {
	count := map[int]int{}
	best := 0
	for _, p := range m.trace {
		if p.t >= from && p.t < to {
			v := get(p)
			if count[v]++; count[v] > count[best] {
				best = v
			}
		}
	}
	return best
}

// meanRate is the mean throughput over the windows in [from, to).
func (m *model) meanRate(from, to time.Duration) float64 {
	sum, n := 0.0, 0
	for _, p := range m.trace {
		if p.t >= from && p.t < to {
			sum += p.rate
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// span returns the least and greatest value of get over [from, to).
func (m *model) span(get func(modelPoint) int, from, to time.Duration) (lo, hi int) {
	lo, hi = 1<<31, -1
	for _, p := range m.trace {
		if p.t >= from && p.t < to {
			lo, hi = min(lo, get(p)), max(hi, get(p))
		}
	}
	return lo, hi
}

func batchOf(p modelPoint) int   { return p.batch }
func workersOf(p modelPoint) int { return p.workers }

func constRate(r float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return r }
}

func stepRate(before, after float64, at time.Duration) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		if t < at {
			return before
		}
		return after
	}
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
