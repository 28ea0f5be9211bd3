package engine

// This file holds a source's admission control: the token bucket at the
// door and the AIMD rule that sets its rate.

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/stats"
	"go.uber.org/zap"
)

// Admission control at a source (Welsh & Culler, "Adaptive Overload
// Control for Busy Internet Servers", USITS 2003): the source admits
// records at a rate, and the rate follows the p99 latency from read to
// finish against a target, additive increase while under it and
// multiplicative decrease while over it. Records beyond the rate are
// refused busy at the door, before anything is made of them (no event,
// no decoding), which is the cheapest place to shed. The package
// documentation and docs/DESIGN.md ("Admission control") explain the
// rules for users.

const (
	// AdmissionPeriod is how often the admission controller decides.
	AdmissionPeriod = 250 * time.Millisecond
	// admissionMinSamples: a window with fewer completions than this is
	// extended (up to admissionMaxWindow) rather than judged on a p99 of
	// a handful.
	admissionMinSamples = 20
	admissionMaxWindow  = time.Second
	// admissionDecrease divides the admitted rate on congestion (SEDA's
	// response-time controller divides by 1.2 as well); a p99 further over
	// the target divides it by p99/target, up to admissionMaxDecrease. A
	// backlog of seconds (in flight over the finish rate, Little's law)
	// halves it window after window until the backlog is under a second.
	// Before the first decrease the rate taken is what the door let in
	// (or, if more, what the pipeline finished).
	admissionDecrease    = 1.2
	admissionMaxDecrease = 2
	// admissionNear and admissionDrain: a p99 just over the target, with
	// little in flight beyond what the pipeline finishes within it, cuts
	// the rate to no less than admissionNear of what the pipeline
	// finishes, less what clears the rest of the backlog within
	// admissionDrain (see drainRate); the cut by admissionDecrease is the
	// lower bound when that is less.
	admissionNear  = 0.95
	admissionDrain = time.Second
	// admissionFast and admissionIdle: while what is in flight would
	// finish within a quarter of the target (and the p99 is under half of
	// it), the rate grows by half per window whatever the estimate says:
	// the estimate cannot exceed what was admitted, and the pipeline is
	// plainly keeping up.
	admissionFast = 1.5
	admissionIdle = 4
	// admissionMinDepth and admissionColdDepth: the door counts the next
	// queue as full at half the target's worth of what the pipeline
	// finishes, never at less than admissionMinDepth events, and at
	// admissionColdDepth before the pipeline has finished anything.
	admissionMinDepth  = 64
	admissionColdDepth = 1024
	// admissionFloor: a decrease goes no lower than what the pipeline
	// finishes over this (unless nothing finishes at all).
	admissionFloor = 8
	// admissionWarmup: no decision until this long after the source's
	// first record finished: a cold pipeline (its first connections, its
	// first transactions) finishes slowly for a moment, and a rate set
	// from that would start far too low. A full queue still sheds at the
	// door meanwhile.
	admissionWarmup = 250 * time.Millisecond
	// admissionSmooth smooths the completion rate per window (a database
	// finishes whole batches, so one window's count is lumpy).
	admissionSmooth = 0.3
	// admissionRecent: a decrease keeps as the estimate of what the
	// pipeline carries the most it finished in this many windows (1 s).
	admissionRecent = 4
	// admissionBacklog: what is in flight, by Little's law, is acted on
	// once it would take this many targets to finish.
	admissionBacklog = 4
	// admissionStep is the additive increase per period, as a share of
	// what the pipeline carries (the most it finished lately, or the rate
	// if more): from a decrease back to where it began in 1.7 s. Below
	// what the pipeline carries over admissionDecrease (after a deep cut),
	// while the p99 and what is in flight are under half the target, the
	// rate doubles per period instead (TCP's slow start).
	admissionStep      = 0.025
	admissionSlowStart = 2
	// admissionLow: the rate grows only while p99 is under this share of
	// the target, and holds between it and the target (SEDA's low water
	// mark of 0.9).
	admissionLow = 0.9
	// admissionBurst is the burst the token bucket lets through at once,
	// in time at the admitted rate, and at least admissionMinBurst
	// records.
	admissionBurst    = 50 * time.Millisecond
	admissionMinBurst = 64
	// AdmissionMinRate is the least admitted rate, in records per second.
	AdmissionMinRate = 10.0
	// capacityWindows: what the pipeline carries is estimated as the most
	// it finished in a window over the last 10 s.
	capacityWindows = 40
	// admissionIdleLift: a window this long with nothing offered and
	// nothing in flight lifts the rate (an idle window is extended to
	// admissionMaxWindow, so it is one such window).
	admissionIdleLift = admissionMaxWindow
)

// Admission is a source's admission controller: a token bucket at the
// admitted rate that the source asks, per read, how many records it may
// let in (stage.SourceRuntime.Admit), and the AIMD rule that sets that
// rate every AdmissionPeriod. A source starts one with
// stage.SourceRuntime.StartAdmission. Its methods are safe for
// concurrent use.
type Admission struct {
	s      *Stage
	target time.Duration

	// The token bucket as GCRA: tat is the theoretical arrival time (ns,
	// nanotime) of the next record; interval the ns per record at the
	// admitted rate, 0 while not limiting; burst the ns of tolerance.
	tat      atomic.Int64
	interval atomic.Int64
	burst    atomic.Int64

	admitted, shed atomic.Uint64
	shedFull       atomic.Uint64 // shed because the next queue was full
	shedMemory     atomic.Uint64 // refused by the memory limit, before the bucket (the window's memory)
	shedRate       atomic.Uint64 // shed for lack of tokens

	// depthLimit is how deep the next queue may be before the door
	// counts it as full: what the pipeline finishes in half the target
	// (0 until it has finished anything).
	depthLimit atomic.Int64

	// Read-to-finish latencies of the window being gathered, of records
	// read since the last decrease (nanotime in since): older ones tell
	// of the rate before it.
	lat   windowHist
	since atomic.Int64

	mu        sync.Mutex
	c         admissionController
	winStart  time.Time // when the window being gathered began
	last      sampleTotals
	p99       time.Duration // of the last window judged
	lastD     stats.Decision
	decisions uint64
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
}

// sampleTotals are the running totals an admission window is the
// difference of.
type sampleTotals struct {
	completed, full, limited, admitted, memory uint64
}

// startAdmission puts the source under admission control with the given
// p99 target (read to finish) and starts its controller, which stops when
// the stage is closed (stage.SourceRuntime.StartAdmission).
func (s *Stage) startAdmission(target time.Duration) {
	a := &Admission{s: s, target: target, stop: make(chan struct{}), done: make(chan struct{})}
	a.c.target = target
	a.depthLimit.Store(a.c.depthLimit())
	a.winStart = time.Now()
	if old := s.adm.Swap(a); old != nil {
		old.close()
	}
	go a.run()
}

// Admit says how many of n records read at now (from the read's one clock
// reading) may go in: all while the controller has not limited the rate,
// else as many as the token bucket holds. While a queue downstream is
// full (see nextFull) it admits none: the records would only wait there
// (or, under overflow reject, be refused after decoding). The source
// refuses the rest busy, at once, before making events of them.
func (a *Admission) Admit(now time.Time, n int) int { return a.admit(now, n, false) }

// AdmitAll is Admit for input that goes in whole or not at all (an HTTP
// request's body): it admits all n records while the bucket holds a
// token, taking what the bucket lacks on credit, which the input after it
// waits out; while the bucket is empty it admits none and takes nothing.
// So over time the rate holds, a body larger than the bucket goes in (it
// would be refused for ever if it needed the tokens at once), and small
// bodies cannot starve a large one (as they would if it needed a full
// bucket). setRate rescales the credit to a new rate.
func (a *Admission) AdmitAll(now time.Time, n int) bool { return a.admit(now, n, true) == n }

func (a *Admission) admit(now time.Time, n int, all bool) int {
	if n <= 0 {
		return 0
	}
	if a.s.nextFull(int(a.depthLimit.Load())) {
		a.shedFull.Add(uint64(n))
		a.shed.Add(uint64(n))
		return 0
	}
	k := a.take(sinceEpoch(now), n, all)
	if k < n {
		a.shedRate.Add(uint64(n - k))
		a.shed.Add(uint64(n - k))
	}
	a.admitted.Add(uint64(k))
	return k
}

// take takes up to n tokens at now (ns) and returns how many it took;
// with all, n or none (see AdmitAll).
func (a *Admission) take(now int64, n int, all bool) int {
	for {
		// The rate is read after tat, each round: a round that lost its
		// CAS to setRate's rescale must not add at the rate before it.
		tat := a.tat.Load()
		iv := a.interval.Load()
		if iv == 0 {
			return n
		}
		burst := a.burst.Load()
		base := max(tat, now)
		room := (now + burst - base) / iv
		if room <= 0 {
			return 0
		}
		k := min(int64(n), room)
		if all {
			k = int64(n) // what the bucket lacks, on credit
		}
		if a.tat.CompareAndSwap(tat, base+k*iv) {
			return int(k)
		}
	}
}

// setRate sets the bucket's rate (records per second; 0: unlimited) at
// now (ns). While AdmitAll's credit is out (taken past the bucket), what
// is taken ahead of now is rescaled to the new rate: it counts records,
// and a body taken on credit at the floor rate would keep the door shut
// for hours after the rate was raised. (Admit never takes credit, so its
// bucket is as it was.)
func (a *Admission) setRate(r float64, now int64) {
	if r <= 0 {
		// Unlimited: credit taken ahead of now is forgiven. Kept, it was
		// not rescaled at the next cut (from no rate there is nothing to
		// rescale from), and a body taken on credit at a trickle shut the
		// door at that cut for as long as the trickle would have taken.
		a.interval.Store(0)
		a.tat.Store(now)
		return
	}
	iv := int64(math.Max(1, 1e9/r))
	oldBurst := a.burst.Swap(max(int64(admissionBurst), admissionMinBurst*iv))
	old := a.interval.Swap(iv)
	if old <= 0 || old == iv {
		return
	}
	for {
		tat := a.tat.Load()
		if tat-now <= oldBurst { // no credit
			return
		}
		ahead := math.Min(float64(tat-now)*float64(iv)/float64(old), math.MaxInt64/4)
		if a.tat.CompareAndSwap(tat, now+int64(ahead)) {
			return
		}
	}
}

// observeN records the read-to-finish latency of n records read at
// arrived (track.Nanotime); those read before the last decrease are not
// counted.
func (a *Admission) observeN(ns, arrived int64, n uint64) {
	if arrived >= a.since.Load() {
		a.lat.observeN(ns, n)
	}
}

// nextFull reports whether a queue downstream of the stage is full, or
// holds limit events or more (limit > 0). It follows the single way on,
// through inline and queued stages alike, up to the terminal stage or a
// stage with several routes: a backlog anywhere on that way delays what
// the door admits now, not only one in the first queue (with the parse
// stage on its own queue, the store's queue is the one that fills).
func (s *Stage) nextFull(limit int) bool {
	for st := s.next; st != nil; st = st.next {
		if st.port != nil && st.port.FullAt(limit) {
			return true
		}
		if len(st.routes) > 1 {
			return false
		}
	}
	return false
}

func (a *Admission) run() {
	defer close(a.done)
	t := time.NewTicker(AdmissionPeriod)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case now := <-t.C:
			a.tick(now)
		}
	}
}

// close stops the controller and waits for it.
func (a *Admission) close() {
	a.stopOnce.Do(func() { close(a.stop) })
	<-a.done
}

// tick gathers the window so far and, once it holds enough, decides.
func (a *Admission) tick(now time.Time) {
	s := a.s
	tot := sampleTotals{completed: s.h.Completed(), full: a.shedFull.Load(), limited: a.shedRate.Load(), admitted: a.admitted.Load(),
		memory: a.shedMemory.Load()}
	a.mu.Lock()
	defer a.mu.Unlock()
	el := now.Sub(a.winStart)
	n := a.lat.count()
	inFlight := s.InFlight()
	if !admissionReady(n, el, inFlight, a.target) {
		return
	}
	w := admissionWindow{
		elapsed:   el,
		completed: tot.completed - a.last.completed,
		full:      tot.full - a.last.full,
		limited:   tot.limited - a.last.limited,
		admitted:  tot.admitted - a.last.admitted,
		memory:    tot.memory - a.last.memory,
		samples:   n,
		p99:       time.Duration(a.lat.quantile(0.99)),
		inFlight:  inFlight,
	}
	a.lat.reset()
	a.last, a.winStart = tot, now
	a.p99 = w.p99
	d, ok := a.c.decide(now, w)
	a.depthLimit.Store(a.c.depthLimit())
	if !ok {
		return
	}
	if d.To < d.From || d.From == 0 {
		a.since.Store(sinceEpoch(now))
	}
	a.setRate(a.c.rate, sinceEpoch(now))
	a.lastD = d
	a.decisions++
	s.log.Debug("stage admission rate changed", zap.String("stage", s.set.Name),
		zap.Float64("from", d.From), zap.Float64("to", d.To), zap.String("reason", d.Reason))
}

// admissionReady says whether a window of n completions over el, with
// inFlight events unfinished, is enough to judge: admissionMinSamples
// completions, or admissionMaxWindow, or a stall as long as the target.
func admissionReady(n uint64, el time.Duration, inFlight uint64, target time.Duration) bool {
	return n >= admissionMinSamples || el >= admissionMaxWindow || (n == 0 && inFlight > 0 && el >= target)
}

// stats reports the controller for /stats.
func (a *Admission) stats() *stats.Control {
	a.mu.Lock()
	defer a.mu.Unlock()
	cs := &stats.Control{
		Admission: &stats.Admission{
			TargetMs: float64(a.target) / 1e6,
			P99Ms:    float64(a.p99) / 1e6,
			Rate:     a.c.rate,
			Admitted: a.admitted.Load(),
			Shed:     a.shed.Load(),
		},
		Decisions: a.decisions,
	}
	if a.decisions > 0 {
		cs.Last = &stats.LastDecision{Decision: a.lastD, AgeS: time.Since(a.lastD.At).Seconds()}
	}
	return cs
}

// admissionWindow is what the controller judges: one window of at least
// AdmissionPeriod.
type admissionWindow struct {
	elapsed   time.Duration
	completed uint64        // events the source made that finished
	samples   uint64        // read-to-finish latencies observed
	p99       time.Duration // their 99th percentile
	full      uint64        // records shed because the next queue was full
	limited   uint64        // records shed for lack of tokens
	admitted  uint64        // records let in
	memory    uint64        // records the memory limit refused before the bucket
	inFlight  uint64        // events made and not finished, at the end
}

// admissionController is the AIMD rule, a pure function of windows so
// that tests run it on a fake clock.
type admissionController struct {
	target time.Duration
	rate   float64 // admitted records per second; 0: not limiting
	// smooth is the completion rate smoothed over about a second; the
	// largest smooth since the last decrease (and over the last
	// capacityWindows windows) is the estimate of what the pipeline
	// carries (a rate cut back after a burst still sees the backlog drain
	// at full speed), which slow start climbs back to and the additive
	// step is a share of. A decrease starts the estimate again from the
	// smoothed rate then: congested, the pipeline finishes what it can.
	smooth   float64
	finished [capacityWindows]float64
	nth      int
	started  time.Time // the first window's end
	cutAt    time.Time // when the rate last decreased
	// lastInFlight is what was in flight at the end of the last window.
	lastInFlight uint64
}

// decide sets the rate from one window.
func (c *admissionController) decide(now time.Time, w admissionWindow) (stats.Decision, bool) {
	if w.completed == 0 && w.inFlight == 0 && w.admitted == 0 && w.full == 0 && w.limited == 0 {
		if w.memory > 0 {
			// Records offered and refused by the memory limit alone:
			// no news of what the pipeline carries either (smoothed in,
			// it would wipe the estimate the door counts the queue full
			// by), nor an idle second that lifts a rate cut under load.
			return stats.Decision{}, false
		}
		// An idle window (no record offered, none in flight) says nothing
		// of what the pipeline carries: smoothed in, it took the finish
		// rate to nothing between bursts, so that the door counted the
		// queue full at a few events and each burst cut the rate further.
		// Nor is there an overload left to limit: a rate cut at one
		// burst, which a burst shorter than a window gives no chance to
		// rise, would let the next in at a trickle. It is lifted.
		if c.rate == 0 || w.elapsed < admissionIdleLift {
			return stats.Decision{}, false
		}
		from := c.rate
		c.rate, c.cutAt = 0, time.Time{}
		return stats.Decision{Knob: stats.KnobAdmission, From: from, To: 0, At: now,
			Reason: fmt.Sprintf("nothing offered or in flight for %s: rate %.0f/s -> unlimited", w.elapsed.Round(time.Millisecond), from)}, true
	}
	x := float64(w.completed) / w.elapsed.Seconds()       // what the pipeline finished
	admitted := float64(w.admitted) / w.elapsed.Seconds() // what the door let in
	if c.nth == 0 {
		c.smooth = x
	} else {
		c.smooth += admissionSmooth * (x - c.smooth)
	}
	if c.started.IsZero() && w.completed > 0 {
		c.started = now // the warm-up runs from the first record finished
	}
	c.finished[c.nth%capacityWindows] = c.smooth
	c.nth++
	capacity, recent := AdmissionMinRate, AdmissionMinRate
	for k, f := range c.finished {
		capacity = math.Max(capacity, f)
		if (c.nth-1-k+capacityWindows)%capacityWindows < admissionRecent {
			recent = math.Max(recent, f)
		}
	}
	// What a record admitted now would wait for, by Little's law: in
	// flight over the smoothed completion rate. Too noisy to act on near
	// the target (a database finishes whole batches), it is trusted only
	// far over it: a backlog of seconds in a deep queue.
	ahead := time.Duration(0)
	switch {
	case w.inFlight > 0 && c.smooth > 0:
		ahead = time.Duration(math.Min(float64(w.inFlight)/c.smooth*1e9, math.MaxInt64/2))
	case w.inFlight > 0:
		ahead = time.Duration(math.MaxInt64 / 2)
	}
	draining := w.inFlight < c.lastInFlight
	c.lastInFlight = w.inFlight
	if c.started.IsZero() || now.Sub(c.started) < admissionWarmup {
		return stats.Decision{}, false // a cold pipeline's first figures say little
	}
	sinceCut := time.Duration(math.MaxInt64)
	if !c.cutAt.IsZero() {
		sinceCut = now.Sub(c.cutAt)
	}
	from := c.rate
	factor := admissionDecrease
	var why string
	full, overTarget := false, false
	switch {
	case w.samples >= admissionMinSamples && w.p99 > c.target:
		overTarget = true
		// Records read since the last decrease took too long: cut more
		// the further over the target, up to half.
		why = fmt.Sprintf("p99 %s over the %s target", w.p99.Round(time.Millisecond), c.target)
		factor = math.Min(admissionMaxDecrease, math.Max(factor, float64(w.p99)/float64(c.target)))
	case x == 0 && w.inFlight > 0 && w.elapsed >= c.target:
		why = fmt.Sprintf("nothing finished for %s with %d in flight", w.elapsed.Round(time.Millisecond), w.inFlight)
		factor = admissionMaxDecrease
	case ahead > admissionBacklog*c.target && sinceCut >= AdmissionPeriod:
		// A backlog of seconds: halve the rate every window until it is
		// under a second, draining or not.
		why = fmt.Sprintf("the %d records in flight take %s to finish at %.0f/s", w.inFlight, ahead.Round(time.Millisecond), c.smooth)
		factor = admissionMaxDecrease
	case w.samples == 0 && w.admitted > 0 && sinceCut > 2*c.target && !draining:
		// None of the records read since the last decrease has finished
		// within twice the target, and the backlog ahead of them is not
		// going. (Within the target alone is no sign: near what the
		// pipeline carries, with the p99 about the target, the first of
		// them finish just after it.)
		why = fmt.Sprintf("none of the records read since the last decrease finished within twice the %s target", c.target)
		factor = admissionMaxDecrease
	case w.full > 0 && sinceCut >= max(c.target, 2*AdmissionPeriod):
		why, full = fullWhy(w.full), true
	}
	if why != "" {
		// The rate now: the admitted rate when limited, else what the door
		// let in this window (or, if more, what the pipeline finished in
		// it or, smoothed, lately: a cold pipeline's smoothed rate lags).
		base := c.rate
		if base == 0 {
			base = math.Max(admitted, math.Max(recent, x))
		}
		r := base / factor
		if overTarget {
			// Near what the pipeline carries a cut by a fifth or more
			// leaves it idle for seconds while the rate climbs back: cut
			// to what drains the backlog beyond the target within
			// admissionDrain instead, if that is less of a cut.
			r = math.Max(r, c.drainRate(recent, w.inFlight))
		}
		if full {
			// A full queue costs no latency to speak of (what does not fit
			// is refused at the door): admit what the pipeline finishes
			// (congested, it finishes what it carries), no less.
			r, factor = math.Min(base, math.Max(recent, admitted)), 1
		}
		// No lower than an eighth of what the pipeline finishes: below it
		// a backlog drains hardly faster, and climbing back takes longer.
		r = math.Max(math.Max(AdmissionMinRate, recent/admissionFloor), r)
		if x == 0 {
			r = math.Max(AdmissionMinRate, base/factor) // a stall: nothing finishes
		}
		if from > 0 && r >= from {
			return stats.Decision{}, false // low enough already
		}
		c.rate = r
		c.cutAt = now
		// Congested, the pipeline finished what it carries over the last
		// second: that is the estimate from now on (it may have slowed).
		clear(c.finished[:])
		c.finished[(c.nth-1)%capacityWindows] = recent
		rate := "unlimited"
		if from > 0 {
			rate = fmt.Sprintf("%.0f/s", from)
		}
		return stats.Decision{Knob: stats.KnobAdmission, From: from, To: c.rate, At: now,
			Reason: fmt.Sprintf("%s: rate %s -> %.0f/s (/ %.2f; %.0f/s finished lately, %d in flight)",
				why, rate, c.rate, base/c.rate, recent, w.inFlight)}, true
	}
	// Increase only where the rate is what holds the load back and the
	// latency has room.
	low := time.Duration(admissionLow * float64(c.target))
	enough := w.samples >= admissionMinSamples || (w.samples > 0 && w.elapsed >= admissionMaxWindow) // at a low rate a whole second's
	if c.rate == 0 || w.limited == 0 || !enough || w.p99 > low || ahead > low {
		return stats.Decision{}, false
	}
	how := "additive"
	switch {
	case c.rate < capacity/admissionDecrease && w.p99 <= c.target/2 && ahead <= c.target/2:
		c.rate = math.Min(c.rate*admissionSlowStart, capacity/admissionDecrease)
		how = "slow start"
	case w.p99 <= c.target/2 && ahead <= c.target/admissionIdle:
		// Next to nothing waits: the pipeline keeps up with ease, so
		// the rate may be far under what it carries.
		c.rate *= admissionFast
		how = "fast: next to nothing waits"
	default:
		c.rate += math.Max(math.Max(capacity, c.rate)*admissionStep, AdmissionMinRate)
	}
	return stats.Decision{Knob: stats.KnobAdmission, From: from, To: c.rate, At: now,
		Reason: fmt.Sprintf("p99 %s under %.0f%% of the %s target and %d records over the rate: rate %.0f/s -> %.0f/s (%s)",
			w.p99.Round(time.Millisecond), 100*admissionLow, c.target, w.limited, from, c.rate, how)}, true
}

// drainRate is the admitted rate that clears, within admissionDrain, what
// is in flight beyond what the pipeline (finishing recent records per
// second) finishes within the target (Little's law), while it keeps
// finishing at that pace: admissionNear of recent, less the backlog's
// share.
func (c *admissionController) drainRate(recent float64, inFlight uint64) float64 {
	backlog := math.Max(0, float64(inFlight)-recent*c.target.Seconds())
	return admissionNear*recent - backlog/admissionDrain.Seconds()
}

// depthLimit is how deep the next queue may be before the door counts it
// as full: what the pipeline finishes, smoothed, in half the target;
// admissionColdDepth until it has finished anything.
func (c *admissionController) depthLimit() int64 {
	if c.smooth <= 0 {
		return admissionColdDepth
	}
	return max(int64(c.smooth*c.target.Seconds()/2), admissionMinDepth)
}

func fullWhy(n uint64) string { return fmt.Sprintf("%d records found the next queue full", n) }

// windowHist is a histogram of latencies that is read and reset once per
// window: the same log-linear buckets as latency, without rotation.
type windowHist struct {
	h histogram
	n atomic.Uint64
}

func (w *windowHist) observeN(ns int64, n uint64) {
	w.h.counts[bucketOf(ns)].Add(n)
	w.n.Add(n)
}

func (w *windowHist) count() uint64 { return w.n.Load() }

// quantile returns the q quantile in ns; 0 when empty.
func (w *windowHist) quantile(q float64) float64 {
	var total uint64
	var counts [numBuckets]uint64
	for i := range counts {
		counts[i] = w.h.counts[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := max(uint64(q*float64(total)+0.5), 1)
	var seen uint64
	for b, c := range counts {
		if seen += c; seen >= rank {
			return bucketUpper(b)
		}
	}
	return 0
}

// reset empties the histogram; latencies racing with it may be lost or
// land in the next window, a small error for a lock-free observe.
func (w *windowHist) reset() {
	for i := range w.h.counts {
		w.h.counts[i].Store(0)
	}
	w.n.Store(0)
}
