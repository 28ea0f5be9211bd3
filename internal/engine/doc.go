// Package engine is the runtime of a staged (SEDA) server: a stage with
// its own completion port and worker pool, the emitter that hands events
// from stage to stage, the controllers that size batches and pools, and
// admission control. Package stage is the API that kinds are written
// against; this package runs them, and only the pipeline (and tests)
// drive it.
//
// A stage's workers are bound to its port (package port) with the stage's
// concurrency as the port's run-slot limit. Each worker takes up to `batch`
// events with GetBatch (waiting up to `linger` for the batch to fill) and
// calls the Handler. The handler hands events on with Emitter.Emit, which
// posts them to the next stage's port, or finishes them with Event.Done. An
// inline stage has no port and no pool: events emitted to it are collected
// and handed to its handler by the upstream worker, after the upstream
// handler returns (operator chaining), so a queue hop is paid only where
// work changes character.
//
// A source stage runs a stage.Source (or a stage.Input, through the
// adapter in input.go) and is its SourceRuntime: it makes events, counts
// those in flight, records their latency from read to finish when they
// finish (the events know their source and arrival), and wakes a drain
// when the last one is finished.
//
// The Event's bookkeeping (who holds it, its source, its generation,
// when it was queued and read) is a track.State, the Event's first
// field; state() reaches it with the one unsafe conversion of the
// package (see internal/track).
//
// # Adaptive control
//
// A stage's batch size and pool size are sized while it runs when its
// Settings leave them 0 (auto), and never move when set (pinned); an
// operator pins or releases them through Lifecycle.SetBatch, SetWorkers
// and SetConcurrency (pipectl scale). The controllers are SEDA's (Welsh,
// Culler, Brewer, SOSP 2001, §4). Every ControlSample (50 ms) a stage's
// control loop reads its port's gauges and its totals; five samples make a
// window, and at most one knob changes per window. A growth is a trial,
// kept only when the windows after it take events faster than those
// before it (since the previous change) by 5% and by twice the measured
// noise of such a mean; each side spans two windows at least and 24
// batches at least (up to 2 s), since events are taken a batch at a time;
// the first window after an idle one (a burst of what queued up) is left
// out, idle meaning that it took no events and none waited (one that took
// none while some waited had every worker inside a batch longer than a
// window: a slow database). A failed trial is undone and pauses that direction (5 s, doubling
// up to 60 s, or until the load moves by 25%); a kept one leaves the
// pauses as they are, so probing at a knob's useful limit grows rarer.
//
// The batching controller doubles the batch when half of a window's
// batches found a whole batch waiting, and halves it when batches average
// a quarter of it or less for two windows (light load). It starts at its
// ceiling, the queue capacity and at most stage.MaxAutoBatch
// (stage.MaxAutoSinkBatch in a terminal stage): a size the queue does not
// fill costs nothing without linger. For a database sink a batch is a
// transaction, so this is where COPY's speed comes from.
//
// The thread-pool controller adds a quarter of the pool (at least one
// worker) when in 80% of a window's samples a batch was waiting while a
// run slot was free: every worker busy, some blocked inside Blocking. The
// growth from n to m workers is kept when it also shows a quarter of the
// most the new workers could add, (m-n)/4n: a database scales less than
// linearly, so asking for more stops a store's pool short. Run
// slots stay at GOMAXPROCS, so a stage that never blocks never has a free
// slot with work waiting and gets no workers beyond them: threads equal to
// the CPUs, plus replacements for the ones blocked, as a completion port
// runs. After a growth that did not pay it tries one worker fewer, and
// after 5 s in which no batch waited it tries one fewer too, so the pool
// walks both ways around its best size. Its range is the run slots to
// AutoWorkersCeiling, and no more than a handler with MaxWorkers can use.
// Retiring a worker interrupts nothing: it leaves when it comes back for
// its next batch.
//
// A source may put itself under admission control
// (SourceRuntime.StartAdmission, netio.tcp's admission.target): Welsh and
// Culler's response-time controller (USITS 2003). Every AdmissionPeriod it
// compares the p99 from read to finish of the records read since its last
// decrease with the target: over, the admitted rate is divided by 1.2 (by
// up to 2 the further over, by more when what is in flight is seconds of
// work), or cut to 95% of what the pipeline finishes, less what drains its
// backlog beyond the target within a second, when that is less of a cut; a
// full queue downstream sets it to what the pipeline finishes; under
// 90% of the target, with records held back, it climbs additively (by
// slow start while far under). The source asks SourceRuntime.Admit per read
// and refuses the rest busy at once, before making events of them, and its
// emitters never wait for room.
//
// docs/DESIGN.md ("Adaptive control") gives the reasons, the constants and
// how fast each controller settles in the tests.
package engine
