package pipeline

// This file holds the pipeline's lifecycle: Start, the two-phase Stop, Run
// and RunWithSignals.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// StopReport says how a Stop went.
type StopReport struct {
	// Abandoned counts the events that were never finished: made by a
	// source and still unfinished once every worker had returned (for a
	// pipeline without sources, the events left in its queues). It is 0
	// after a complete drain.
	Abandoned uint64
	// Fates says what became of the sources' events finished or
	// abandoned while the pipeline stopped (those in flight when Stop
	// began, and those read while the sources stopped taking input): how
	// many were stored, will be redelivered by a transport, were lost
	// because nobody was told, and are left for their clients to resend.
	// The Abandoned events are among them, counted by what their source
	// makes of them (stage.Fate), and so are the records a source's door
	// refused meanwhile (the memory limit, admission control, a full
	// queue under reject), which no event was made of, by the fate of a
	// busy refusal. Fates.String is the report's line.
	Fates stats.Fates
	// Forced is true when phase two ran: the drain was cut short because
	// Stop's context ended (or a second Stop's did). It is false after a
	// failed Start, which stops what it started with no drain to cut.
	Forced bool
	// Took is how long the whole Stop took.
	Took time.Duration
}

// errForced is the cause reported when a later Stop call (or a second
// signal) forced phase two; the error wraps that call's ctx.Err() too.
var errForced = errors.New("stop forced")

// Start starts the pipeline: the admin endpoint first (so /healthz answers
// and /readyz says 503 while stages start), then every handler stage in
// reverse topological order (sinks first: a handler's Start, see
// stage.Kind, then its workers), then the sources, which begin taking
// input. When Start returns nil the pipeline is running.
//
// A stage whose queue is on a transport and that runs here is the
// exception: it starts in the background once the rest has, then the
// consumer that feeds it, so that a database down at start (db.postgres
// retrying under on_start: retry) holds neither the sources nor their
// acks: what they publish waits in the queue. Should it fail to start on
// its own, the pipeline stops: Run returns the error, and so does Stop.
// Stop ends such a start in progress.
//
// ctx bounds starting only; it is handed to each Starter and Source.Start,
// and stages keep running after it ends. When a stage fails to start,
// Start stops and joins everything it had started (without a drain: what
// is in flight is abandoned), closes every handler, stops the admin
// endpoint and returns the error naming the stage; the pipeline is then
// stopped for good, as it is after Stop. Start after Stop returns
// ErrClosed; a pipeline runs once.
func (p *Pipeline) Start(ctx context.Context) error {
	p.start.Lock()
	defer p.start.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.mu.Lock()
	switch {
	case p.stopBegun():
		p.mu.Unlock()
		return ErrClosed
	case !p.began.IsZero():
		p.mu.Unlock()
		return fmt.Errorf("pipeline %q: already started", p.name)
	}
	p.began = time.Now()
	p.cancelStart = cancel
	p.mu.Unlock()

	err := p.startAll(ctx)
	if err == nil {
		p.mu.Lock()
		p.state = stateRunning
		p.mu.Unlock()
		p.log.Info("pipeline started", zap.String("pipeline", p.name),
			zap.Int("stages", len(p.shown)), zap.String("admin", p.AdminAddr())) // as /stats lists them: a queue's stand-ins are not the user's
		return nil
	}
	p.log.Error("pipeline failed to start; stopping what started",
		zap.String("pipeline", p.name), zap.String("error", stage.Redact(err.Error())))
	if p.beginStop() {
		// Nobody is waiting to stop it: stop now, with phase two at once.
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		rep, _ := p.shutdown(cctx, nil, true)
		p.finishStop(rep, nil)
	} // else a Stop is waiting for this Start to return and will do it.
	return err
}

func (p *Pipeline) startAll(ctx context.Context) error {
	if p.admin.Listen != "" {
		adm, err := startAdmin(p)
		if err != nil {
			return fmt.Errorf("pipeline %q: %w", p.name, err)
		}
		p.mu.Lock()
		p.adm = adm
		p.mu.Unlock()
	}
	// Handler stages from the sinks back, so that nothing is emitted to a
	// stage that is not running; sources last, whatever the order.
	for pass := 0; pass < 2; pass++ {
		for k := len(p.order) - 1; k >= 0; k-- {
			i := p.order[k]
			if p.isSource[i] != (pass == 1) || p.isBehind(i) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("pipeline %q: start: %w", p.name, err)
			}
			if err := p.stages[i].Start(ctx); err != nil {
				return err // names the stage
			}
			p.started[i] = true
		}
	}
	p.startBehind()
	return nil
}

// Stop stops the pipeline in two phases and returns once every goroutine
// the pipeline started has returned.
//
// Phase one drains. Each source stops taking input (Source.StopInput:
// listeners close, what was read is emitted). Then, in topological order,
// each stage's queue is closed once every stage upstream of it has stopped
// emitting (a source once its input has stopped, a handler stage once its
// workers have returned; an inline stage has no queue and runs inside its
// upstream's workers), and its workers finish what is queued and return.
// Last, each source drains (Source.Drain: the completions of its events
// are written, acks flushed). Stop does not wait for clients to read
// those acks, nor for anything outside the pipeline.
//
// Phase two runs when ctx ends before phase one is complete. Every stage is
// aborted: workers return after their current batch, handlers see their
// context end, and events still queued are left unfinished; StopReport
// counts them as Abandoned. A handler that ignores its context holds Stop
// until it returns.
//
// Then every stage is closed (sources, and handlers with a Close
// method), and the admin endpoint is shut down last, so that
// /readyz answers 503 while the pipeline drains.
//
// Stop returns nil after a complete drain. When phase two ran, the error
// wraps ctx.Err() and says how many events were abandoned and what became
// of the events and door-refused records it counted (StopReport.Fates);
// errors from StopInput, Drain and Close are joined to it.
//
// Stop is idempotent: a later or concurrent call waits for the first to
// finish and returns the same report and error; if its own ctx ends first,
// it forces phase two. Stop before Start closes the handlers and marks the
// pipeline stopped. Stop cancels a Start in progress (its context ends, so
// it fails and stops what it had started) and waits for it to return.
func (p *Pipeline) Stop(ctx context.Context) (StopReport, error) {
	if !p.beginStop() {
		p.mu.Lock()
		done := p.stopDone
		p.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			p.forceStop(ctx.Err())
			<-done
		}
		return p.result()
	}
	// A Start in progress is cancelled (it fails, and stops what it had
	// started) rather than waited for: it may wait on a stage's start for
	// as long as its own context lets it.
	p.mu.Lock()
	if p.cancelStart != nil {
		p.cancelStart()
	}
	p.mu.Unlock()
	p.start.Lock()
	defer p.start.Unlock()
	rep, err := p.shutdown(ctx, p.force, false)
	p.finishStop(rep, err)
	return rep, err
}

// beginStop marks the pipeline as stopping; it reports whether this call
// did, and so must run the stop procedure and call finishStop.
func (p *Pipeline) beginStop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopBegun() {
		return false
	}
	p.stopDone = make(chan struct{})
	p.force = make(chan struct{})
	close(p.stopCalled)
	return true
}

// stopBegun reports whether Stop was called (or a failed Start stopped
// the pipeline): stopCalled is closed.
func (p *Pipeline) stopBegun() bool {
	select {
	case <-p.stopCalled:
		return true
	default:
		return false
	}
}

// forceStop forces phase two of the stop in progress for a later Stop
// whose ctx ended with cause: the stop's error wraps both errForced and
// cause, as the docs promise a forced stop's error wraps ctx.Err().
func (p *Pipeline) forceStop(cause error) {
	p.forceOnce.Do(func() {
		p.mu.Lock()
		p.forceCause = cause
		p.mu.Unlock()
		close(p.force)
	})
}

func (p *Pipeline) finishStop(rep StopReport, err error) {
	p.mu.Lock()
	p.report, p.stopErr = rep, err
	p.state = stateStopped
	if !p.began.IsZero() {
		p.ended = time.Now()
	}
	p.mu.Unlock()
	close(p.stopDone)
	if p.ownLog {
		_ = p.log.Sync() // stderr may refuse fsync; nothing to do about it
	}
}

func (p *Pipeline) result() (StopReport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.report, p.stopErr
}

// shutdown is the stop procedure; the caller holds p.start. force, when
// closed, ends phase one as ctx ending does. failedStart is set when Start
// failed and stops what it started (ctx already ended): there was no drain
// to cut short, so the report and the log lines say nothing of one, and
// come after the start's error, which is the news.
func (p *Pipeline) shutdown(ctx context.Context, force <-chan struct{}, failedStart bool) (StopReport, error) {
	t0 := time.Now()
	p.mu.Lock()
	if p.state == stateRunning {
		p.state = stateDraining
	}
	p.mu.Unlock()
	if failedStart {
		p.log.Info("pipeline stopping what started", zap.String("pipeline", p.name))
	} else {
		p.log.Info("pipeline stopping: draining", zap.String("pipeline", p.name))
	}

	var rep StopReport
	var errs []error
	before := p.fates(false)
	if err := p.stopBehind(); err != nil {
		errs = append(errs, err)
	}
	// Phase one runs in its own goroutine so that this one can watch ctx.
	p1ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- p.drainAll(p1ctx) }()
	var cause error
	select {
	case err := <-drained:
		if err != nil {
			errs = append(errs, err)
		}
	case <-ctx.Done():
		cause = ctx.Err()
	case <-force:
		p.mu.Lock()
		cause = fmt.Errorf("%w by a later Stop: %w", errForced, p.forceCause)
		p.mu.Unlock()
	}
	if cause != nil {
		// Phase two: end the drain and everything it waits for. Closing
		// the queues fails posts blocked on a full queue, so a source
		// stuck there returns too.
		rep.Forced = !failedStart // no drain ran to be cut short
		cancel()
		for _, st := range p.stages {
			st.Abort()
			st.CloseQueue()
		}
		if err := <-drained; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	for _, st := range p.stages {
		st.Abort() // phase one is over: release the workers' contexts
		st.Wait()
	}
	rep.Abandoned = p.abandoned()
	for i, st := range p.stages {
		if p.isSource[i] && !p.started[i] {
			continue // a source that never started holds nothing
		}
		// A panic in one stage's Close is that stage's error (the engine
		// recovers it): the others are closed all the same.
		if err := st.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Counted once the sources are closed: a source may finish events
	// itself until then (natsq's consumer refuses what it took as it
	// closes), and one caught between its count of the failure and that
	// of the completion would count twice.
	rep.Fates = p.fates(true).Sub(before)
	p.mu.Lock()
	adm := p.adm
	p.mu.Unlock()
	if adm != nil {
		if err := adm.stop(); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: admin: %w", p.name, err))
		}
	}
	rep.Took = time.Since(t0)
	switch {
	case failedStart && rep.Abandoned > 0:
		errs = append([]error{fmt.Errorf("pipeline %q: %d events taken in before the start failed were abandoned (%s)",
			p.name, rep.Abandoned, rep.Fates)}, errs...)
	case cause != nil && !failedStart:
		errs = append([]error{fmt.Errorf("pipeline %q: drain cut short: %s (%d of them abandoned unfinished): %w",
			p.name, rep.Fates, rep.Abandoned, cause)}, errs...)
	}
	err := errors.Join(errs...)
	fields := []zap.Field{zap.String("pipeline", p.name), zap.String("drain", rep.Fates.String()),
		zap.Uint64("abandoned", rep.Abandoned), zap.Bool("forced", rep.Forced), zap.Duration("took", rep.Took)}
	if failedStart {
		// No drain ran: the fates are those of the events taken in
		// before the start failed.
		fields = []zap.Field{zap.String("pipeline", p.name), zap.String("fates", rep.Fates.String()),
			zap.Uint64("abandoned", rep.Abandoned), zap.Duration("took", rep.Took)}
	}
	if err != nil {
		p.log.Warn("pipeline stopped", append(fields, zap.String("error", stage.Redact(err.Error())))...)
	} else {
		p.log.Info("pipeline stopped", fields...)
	}
	return rep, err
}

// drainAll is phase one. It goes on through every step even when ctx has
// ended, since each step then returns at once (the workers are aborted).
func (p *Pipeline) drainAll(ctx context.Context) error {
	var errs []error
	stopInput := func(i int) {
		if err := p.stages[i].StopInput(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stage %q: stop input: %w", p.stages[i].Stage().Name(), err))
		}
	}
	// A consumer whose stream a stand-in of this process publishes to
	// takes input until that stand-in has drained: stopped first, with
	// the stream full, it would leave the stand-in nowhere to publish
	// until the drain's deadline.
	late := make(map[int]bool)
	for _, b := range p.behind {
		if b.fed {
			late[b.cons] = true
		}
	}
	for i := range p.stages {
		if p.isSource[i] && p.started[i] && !late[i] {
			stopInput(i)
		}
	}
	// In topological order every stage upstream of st has already stopped
	// emitting: sources above, handler stages by the Wait below, and a
	// late consumer's stand-in (which comes before it) by then too.
	for _, i := range p.order {
		switch {
		case late[i] && p.started[i]:
			stopInput(i)
		case !p.isSource[i]:
			p.stages[i].CloseQueue()
			p.stages[i].Wait()
		}
	}
	for i, st := range p.stages {
		if p.isSource[i] && p.started[i] {
			if err := st.Drain(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stage %q: drain: %w", st.Stage().Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// fates adds up what became of the sources' events so far (see
// engine.Stage.Fates); unfinished counts those not finished yet by the
// fate a forced stop leaves them.
func (p *Pipeline) fates(unfinished bool) stats.Fates {
	var f stats.Fates
	for i, st := range p.stages {
		if p.isSource[i] {
			f = f.Add(st.Stage().Fates(unfinished))
		}
	}
	return f
}

// abandoned counts the unfinished events once every worker has returned.
func (p *Pipeline) abandoned() uint64 {
	var n uint64
	sources := false
	for i, st := range p.stages {
		if p.isSource[i] {
			sources = true
			n += st.Stage().InFlight()
		}
	}
	if sources {
		return n
	}
	for _, st := range p.stages {
		n += uint64(st.Queued())
	}
	return n
}

// Run starts the pipeline, runs it until ctx ends or every source has
// ended its input (a finite source: stage.ErrEndOfInput) and, where a
// stage here is fed by a queue on a transport, that queue is empty
// (stage.Emptier), then stops it with the drain deadline
// (Options.DrainTimeout, else Config.Drain, else DefaultDrain). A Stop
// called elsewhere meanwhile ends the wait too, and keeps its own
// deadline: Run returns its result. It returns Start's error, or Stop's:
// nil after a complete drain, however the run ended.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	p.waitForEnd(ctx.Done(), nil)
	dctx, cancel := p.drainContext()
	defer cancel()
	_, err := p.Stop(dctx)
	return err
}

// drainContext is the context Run and RunWithSignals stop with: the drain
// deadline, unless Stop was called elsewhere already. Then their Stop only
// waits for that one's result, which a deadline of theirs would cut short
// (forcing phase two on a Stop that asked for a full drain).
func (p *Pipeline) drainContext() (context.Context, context.CancelFunc) {
	if p.stopBegun() {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), p.drain)
}

// waitForEnd waits until every source has ended its input and the queues
// on transports consumed here are empty (true; waitForQueues), or
// until stop is closed, a signal comes on sig (nil: none), which it
// returns, a stage behind a transport's queue failed to start, or Stop
// was called. A pipeline without sources (a transport's consumer does not
// count) waits for the others only.
func (p *Pipeline) waitForEnd(stop <-chan struct{}, sig <-chan os.Signal) (os.Signal, bool) {
	sources := 0
	for i, st := range p.stages {
		if !p.isSource[i] || p.isConsumer(i) {
			continue
		}
		sources++
		if s, ok := await(p, st.Stage().Ended(), stop, sig); !ok {
			return s, false
		}
	}
	if sources > 0 {
		if s, ok := p.waitForQueues(stop, sig); !ok {
			return s, false
		}
		p.log.Info("every source has ended its input; draining", zap.String("pipeline", p.name))
		return nil, true
	}
	s, _ := await[struct{}](p, nil, stop, sig)
	return s, false
}

// await waits for c (nil: never), and returns true, unless stop, a
// signal, a failed start behind a transport's queue or a call of Stop
// comes first: then false, and the signal if one came.
func await[T any](p *Pipeline, c <-chan T, stop <-chan struct{}, sig <-chan os.Signal) (os.Signal, bool) {
	select {
	case <-c:
		return nil, true
	case <-stop:
	case <-p.failed:
	case <-p.stopCalled:
	case s := <-sig:
		return s, false
	}
	return nil, false
}

// queuePoll is how often a finite run that has ended its input asks the
// queues on transports whether they are empty.
const queuePoll = 100 * time.Millisecond

// waitForQueues is the rest of a finite run once its sources have ended
// their input: it waits until their events are finished (handed to the
// queues on transports, among others) and the queue of each consumer
// here that can tell (stage.Emptier) is empty, so that the drain finds
// the run's events stored, not waiting in a stream. It returns as await
// does when something else ends the wait first.
func (p *Pipeline) waitForQueues(stop <-chan struct{}, sig <-chan os.Signal) (os.Signal, bool) {
	var asked []behind
	for _, b := range p.behind {
		if b.empty != nil {
			asked = append(asked, b)
		}
	}
	if len(asked) == 0 {
		return nil, true
	}
	t := time.NewTicker(queuePoll)
	defer t.Stop()
	logged, warned := false, false
	for {
		if p.queuesEmpty(asked, &warned) {
			return nil, true
		}
		if !logged {
			logged = true
			p.log.Info("every source has ended its input; waiting for the queues on transports to empty",
				zap.String("pipeline", p.name))
		}
		if s, ok := await(p, t.C, stop, sig); !ok {
			return s, false
		}
	}
}

// queuesEmpty reports whether every source's events are finished and
// each consumer in asked has started and finds its queue empty. The first
// failure to ask is logged (warned).
func (p *Pipeline) queuesEmpty(asked []behind, warned *bool) bool {
	for i, st := range p.stages {
		if p.isSource[i] && !p.isConsumer(i) && st.Stage().InFlight() > 0 {
			return false
		}
	}
	for _, b := range asked {
		p.mu.Lock()
		started := p.started[b.cons]
		p.mu.Unlock()
		if !started {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var empty bool
		err := protect(func() (err error) {
			empty, err = b.empty.Empty(ctx)
			return err
		})
		cancel()
		if err != nil && !*warned {
			*warned = true
			p.logPanic(p.stages[b.stage].Stage().Name(), "empty", err)
			p.log.Warn("cannot tell whether a queue is empty; still waiting for it", zap.String("pipeline", p.name),
				zap.String("stage", p.stages[b.stage].Stage().Name()), zap.String("error", stage.Redact(err.Error())))
		}
		if err != nil || !empty {
			return false
		}
	}
	return true
}

// SignalOptions adapt RunWithSignals to a program; the zero value is valid.
type SignalOptions struct {
	// Signals, if not nil, is where the signals come from instead of
	// SIGINT and SIGTERM, which RunWithSignals otherwise catches itself
	// from its call to its return. A program that catches them earlier
	// (while it prepares what the pipeline needs) passes its channel.
	Signals <-chan os.Signal
	// Started, if set, is called once Start has succeeded, before
	// waiting for a signal: to print the pipeline's addresses.
	Started func()
	// Draining, if set, is called when a signal starts phase one.
	Draining func(os.Signal)
	// Forcing, if set, is called when a second signal forces phase two.
	Forcing func(os.Signal)
}

// RunWithSignals is Run for a program's main pipeline: SIGINT or SIGTERM
// (or ctx ending, or every source ending its input) starts phase one of
// Stop, with the drain deadline; a
// second signal skips to phase two at once. A signal while the pipeline
// starts cancels the start. At most one SignalOptions may be given. Signal
// notification is stopped before it returns. It returns Start's error, or
// Stop's; Stop called afterwards returns Stop's report again.
func (p *Pipeline) RunWithSignals(ctx context.Context, opts ...SignalOptions) error {
	var o SignalOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return fmt.Errorf("pipeline %q: RunWithSignals takes one SignalOptions, not %d", p.name, len(opts))
	}
	sig := o.Signals
	if sig == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(ch)
		sig = ch
	}

	// A signal while starting cancels the start; one that comes as Start
	// succeeds starts the drain.
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	var first os.Signal
	startDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case first = <-sig:
			cancelStart()
		case <-startDone:
		}
	})
	err := p.Start(startCtx)
	close(startDone)
	wg.Wait()
	if err != nil {
		if first != nil {
			return fmt.Errorf("pipeline %q: %s while starting: %w", p.name, first, err)
		}
		return err
	}
	if o.Started != nil {
		o.Started()
	}

	if first == nil {
		first, _ = p.waitForEnd(ctx.Done(), sig)
	}
	if first != nil {
		p.log.Info("signal: draining; send another to stop at once",
			zap.String("pipeline", p.name), zap.String("signal", first.String()))
		if o.Draining != nil {
			o.Draining(first)
		}
	}
	dctx, cancel := p.drainContext()
	defer cancel()
	finished := make(chan struct{})
	wg.Go(func() {
		select {
		case s := <-sig:
			p.log.Warn("second signal: stopping at once",
				zap.String("pipeline", p.name), zap.String("signal", s.String()))
			if o.Forcing != nil {
				o.Forcing(s)
			}
			cancel()
		case <-finished:
		}
	})
	_, err = p.Stop(dctx)
	close(finished)
	wg.Wait()
	return err
}
