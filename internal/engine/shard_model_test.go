package engine

// This file tests shard_by's per-key order on a fake clock, with the real
// mailboxes between a model port and model workers, while the pool is
// resized by its controller or by an operator.

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// shardModel is a stage with shard_by simulated on a fake clock: the real
// mailboxes (shards) between a simulated port and a pool of simulated
// workers that follow workSharded's protocol (claim while holding a run
// slot; else give the slot up and wait for the intake; the intake holder
// takes from the port when a slot is free and the mailboxes have room).
// A handler's batch takes CPU time (holding a run slot), then time inside
// stage.Blocking (holding none). The pool is resized by the pool
// controller, as the runtime applies its decisions, and by an operator at
// random times; a retired worker handles what is runnable, then leaves.
type shardModel struct {
	rng      *rand.Rand
	sh       *shards
	capacity int
	conc     int
	batch    int
	keys     int
	hot      float64 // share of the events that go to key 0
	cpu      time.Duration
	block    time.Duration
	rate     func(time.Duration) float64

	ctl      *controller
	port     []*stage.Event
	workers  []*shardWorker
	token    *shardWorker // the intake's holder
	now      time.Duration
	arrive   float64
	nextSeq  []uint64 // per key: the seq of its next event
	lastSeq  []uint64 // per key: the seq of the last handled
	busy     []bool   // per key: in a running batch
	taken    uint64
	batches  uint64
	full     uint64
	handled  uint64
	made     uint64
	resizes  int
	bad      []string
	maxAbove int // the most workers that ran over the limit (blocking take-backs)
}

type shardPhase int

const (
	swClaim  shardPhase = iota // holds a slot, about to claim
	swIdle                     // no slot, waits for the intake
	swIntake                   // holds the intake, waits for events, a slot, room
	swCPU                      // runs its batch, holding a slot
	swBlock                    // runs its batch inside Blocking, no slot
)

type shardWorker struct {
	phase   shardPhase
	slot    bool
	left    time.Duration
	batch   []*stage.Event
	held    []uint8
	retired bool
}

func newShardModel(seed int64, workers int, auto bool) *shardModel {
	m := &shardModel{rng: rand.New(rand.NewSource(seed)), sh: newShards([]string{"k"}),
		capacity: 2048, conc: 2, batch: 64, keys: 500, hot: 0.2,
		cpu: 20 * time.Microsecond, block: 2 * time.Millisecond}
	m.ctl = newController(m.batch, AutoBatchCeiling(m.capacity), auto, workers, m.conc,
		max(4*m.conc, minAutoWorkersCeiling), auto)
	for range workers {
		m.workers = append(m.workers, &shardWorker{phase: swIdle})
	}
	m.nextSeq = make([]uint64, m.keys)
	m.lastSeq = make([]uint64, m.keys)
	m.busy = make([]bool, m.keys)
	return m
}

func (m *shardModel) running() int {
	n := 0
	for _, w := range m.workers {
		if w.slot {
			n++
		}
	}
	return n
}

func (m *shardModel) live() int {
	n := 0
	for _, w := range m.workers {
		if !w.retired {
			n++
		}
	}
	return n
}

// resize adds workers or retires the newest, as resizePool does.
func (m *shardModel) resize(n int) {
	for m.live() < n {
		m.workers = append(m.workers, &shardWorker{phase: swIdle})
	}
	for i := len(m.workers) - 1; i >= 0 && m.live() > n; i-- {
		m.workers[i].retired = true
	}
	m.resizes++
}

func (m *shardModel) sample() sample {
	queued, runnable := m.sh.depth()
	d := runnable
	if queued < bound(m.batch, m.capacity) {
		d += len(m.port)
	}
	s := sample{depth: d, capacity: m.capacity, concurrency: m.conc,
		taken: m.taken, batches: m.batches, full: m.full}
	for _, w := range m.workers {
		switch w.phase {
		case swIdle, swIntake:
			s.waiting++
		case swCPU:
			s.running++
		case swBlock:
			s.blocked++
		}
	}
	return s
}

// step advances the model by one modelStep; arrivals stop when arrive is
// false.
func (m *shardModel) step(arrive bool) {
	if arrive {
		m.arrive += m.rate(m.now) * modelStep.Seconds()
		for ; m.arrive >= 1 && len(m.port) < m.capacity; m.arrive-- {
			k := m.rng.Intn(m.keys)
			if m.rng.Float64() < m.hot {
				k = 0
			}
			m.nextSeq[k]++
			ev := new(stage.Event)
			ev.Seq = m.nextSeq[k]
			ev.Set("k", int64(k))
			m.port = append(m.port, ev)
			m.made++
		}
		m.arrive = min(m.arrive, 1) // a full port holds the source back
	}
	for _, w := range m.workers {
		switch w.phase {
		case swCPU:
			if w.left -= modelStep; w.left <= 0 {
				w.phase, w.left, w.slot = swBlock, m.block, false
			}
		case swBlock:
			if w.left -= modelStep; w.left <= 0 {
				m.finish(w)
			}
		}
	}
	// Workers act in a random order until none can: the interleavings of
	// the real goroutines.
	for changed := true; changed; {
		changed = false
		for _, i := range m.rng.Perm(len(m.workers)) {
			if m.act(m.workers[i]) {
				changed = true
			}
		}
		live := m.workers[:0]
		for _, w := range m.workers {
			if w.phase != swIdle || !w.retired {
				live = append(live, w)
			}
		}
		m.workers = live
	}
	if above := m.running() - m.conc; above > m.maxAbove {
		m.maxAbove = above
	}
	m.now += modelStep
}

// finish ends w's batch: checks the order, takes the slot back (a
// blocking call's return may go over the limit) and releases the shards.
func (m *shardModel) finish(w *shardWorker) {
	for _, ev := range w.batch {
		k := keyOf(ev)
		m.busy[k] = false
	}
	w.slot = true
	m.sh.release(w.held)
	w.batch, w.held = w.batch[:0], w.held[:0]
	w.phase = swClaim
}

// act makes w take its next step if it can, and reports whether it did.
func (m *shardModel) act(w *shardWorker) bool {
	switch w.phase {
	case swClaim:
		buf := make([]*stage.Event, m.batch)
		n, held := m.sh.claim(buf, w.held[:0])
		if n == 0 {
			w.slot, w.phase = false, swIdle
			return true
		}
		w.held, w.batch = held, buf[:n]
		m.taken += uint64(n)
		m.batches++
		if n == m.batch {
			m.full++
		}
		seen := map[int64]bool{}
		for _, ev := range w.batch {
			k := keyOf(ev)
			if !seen[k] && m.busy[k] {
				m.bad = append(m.bad, fmt.Sprintf("%v: key %d in two batches", m.now, k))
			}
			seen[k] = true
			m.busy[k] = true
			if ev.Seq != m.lastSeq[k]+1 {
				m.bad = append(m.bad, fmt.Sprintf("%v: key %d seq %d after %d", m.now, k, ev.Seq, m.lastSeq[k]))
			}
			m.lastSeq[k] = ev.Seq
			m.handled++
		}
		w.phase, w.left = swCPU, m.cpu*time.Duration(1+n/8)
		return true
	case swIdle:
		if w.retired || m.token != nil {
			return false
		}
		m.token, w.phase = w, swIntake
		return true
	case swIntake:
		if w.retired {
			m.token, w.phase = nil, swIdle
			return true
		}
		queued, _ := m.sh.depth()
		room := bound(m.batch, m.capacity) - queued
		if room <= 0 || len(m.port) == 0 || m.running() >= m.conc {
			return false
		}
		n := min(room, m.batch, len(m.port))
		idx := make([]uint8, n)
		for i, ev := range m.port[:n] {
			idx[i], _ = m.sh.index(ev, nil)
		}
		m.sh.put(m.port[:n], idx)
		m.port = m.port[n:]
		m.token, w.slot, w.phase = nil, true, swClaim
		return true
	}
	return false
}

// run simulates until the fake clock reads until, with the controller
// sampling every ControlSample and an operator pinning the pool to a
// random size every `operator` (0: never).
func (m *shardModel) run(until, operator time.Duration) {
	next, nextOp := m.now, m.now+operator
	for m.now < until {
		if m.now >= next {
			for _, d := range m.ctl.observe(fakeEpoch.Add(m.now), m.sample()) {
				switch d.Knob {
				case stats.KnobBatch:
					m.batch = int(d.To)
				case stats.KnobWorkers:
					m.resize(int(d.To))
				}
			}
			next += ControlSample
		}
		if operator > 0 && m.now >= nextOp {
			m.resize(1 + m.rng.Intn(12))
			nextOp += operator
		}
		m.step(true)
	}
}

// drain runs without arrivals until everything made is handled, or fails.
func (m *shardModel) drain(t *testing.T) {
	t.Helper()
	for end := m.now + 10*time.Second; m.handled < m.made; m.step(false) {
		if m.now > end {
			queued, runnable := m.sh.depth()
			t.Fatalf("stuck: handled %d of %d; port %d, mailboxes %d (%d runnable), workers %d", m.handled, m.made, len(m.port), queued, runnable, len(m.workers))
		}
	}
}

func (m *shardModel) check(t *testing.T) {
	t.Helper()
	if len(m.bad) > 0 {
		t.Fatalf("%d violations, the first: %v", len(m.bad), m.bad[:min(5, len(m.bad))])
	}
	for k, s := range m.lastSeq {
		if s != m.nextSeq[k] {
			t.Fatalf("key %d: handled up to seq %d of %d", k, s, m.nextSeq[k])
		}
	}
	if m.maxAbove > 0 {
		// Blocking take-backs only: the intake and claims never take a
		// slot over the limit.
		t.Logf("workers over the run-slot limit at most: %d", m.maxAbove)
	}
}

// Per-key order while the pool controller resizes the pool under a load
// that steps up and down, with a hot key taking a fifth of the events.
func TestShardModelOrderUnderPoolController(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		m := newShardModel(seed, 2, true)
		m.rate = func(t time.Duration) float64 {
			if (t/(3*time.Second))%2 == 1 {
				return 40000
			}
			return 2000
		}
		m.run(15*time.Second, 0)
		m.drain(t)
		m.check(t)
		if m.resizes < 3 {
			t.Fatalf("seed %d: the controller resized the pool %d times; the test needs resizing", seed, m.resizes)
		}
		t.Logf("seed %d: %d events, %d resizes, %d batches", seed, m.made, m.resizes, m.batches)
	}
}

// Per-key order while an operator resizes the pool every 20 ms, between
// 1 and 12 workers, under a load the pool cannot always keep up with.
func TestShardModelOrderUnderOperatorResizes(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		m := newShardModel(seed, 4, false)
		m.hot = 0.05
		m.rate = func(time.Duration) float64 { return 30000 }
		m.run(5*time.Second, 20*time.Millisecond)
		m.drain(t)
		m.check(t)
		t.Logf("seed %d: %d events, %d resizes", seed, m.made, m.resizes)
	}
}
