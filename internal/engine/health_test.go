package engine

// This file tests a stage's health on a fake clock: outages, flapping,
// stale failures, stalls and the age of the oldest event.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// A fake clock for health: nanoseconds from an arbitrary start.
func at(d time.Duration) int64 { return int64(time.Hour + d) }

func sinceOf(h stats.Health) time.Duration {
	return h.Since.Sub(track.Epoch().Add(time.Hour))
}

// An outage as the health rules see it, on a fake clock: degraded at the
// first failure, down once attempts have failed for downAfter with no
// success, with the last error; the first success makes it degraded
// (failures lately), and ok once recentAfter passes without a failure.
func TestHealthOutage(t *testing.T) {
	var h health
	if got := h.judge(at(0), 0, false); got.State != stats.HealthOK || got.Error != "" {
		t.Fatalf("a new stage: %+v, want ok", got)
	}
	refused := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	h.report(at(time.Second), errors.New("unexpected EOF"))
	got := h.judge(at(time.Second), 0, true)
	if got.State != stats.HealthDegraded || got.Error != "unexpected EOF" || sinceOf(got) != time.Second || got.Failures != 1 {
		t.Fatalf("after a failure: %+v, want degraded since 1s with its error", got)
	}
	// Attempts keep failing, a retry every 400 ms.
	for d := 1400 * time.Millisecond; d <= 4*time.Second; d += 400 * time.Millisecond {
		h.report(at(d), refused)
		got = h.judge(at(d), d-time.Second, true)
		want := stats.HealthDegraded
		if d-time.Second >= downAfter {
			want = stats.HealthDown
		}
		if got.State != want || got.Error != refused.Error() {
			t.Fatalf("at %s: %+v, want %s with the last error", d, got, want)
		}
	}
	if sinceOf(got) != time.Second+downAfter {
		t.Fatalf("down since %s, want %s (downAfter after the first failure)", sinceOf(got), time.Second+downAfter)
	}
	if !h.isFailing() || h.failureCount() != 8 {
		t.Fatalf("failing %v, %d failures; want true, 8", h.isFailing(), h.failureCount())
	}
	// Back: the first success ends the failing; failures stay news for
	// recentAfter.
	h.report(at(5*time.Second), nil)
	if h.isFailing() {
		t.Fatal("still failing after a success")
	}
	got = h.judge(at(5*time.Second), 0, true)
	if got.State != stats.HealthDegraded || !strings.Contains(got.Error, refused.Error()) || sinceOf(got) != 5*time.Second {
		t.Fatalf("after the first success: %+v, want degraded since 5s, naming the last failure", got)
	}
	last := 3800 * time.Millisecond // the last failure
	if got := h.judge(at(last+recentAfter-time.Millisecond), 0, false); got.State != stats.HealthDegraded {
		t.Fatalf("just under recentAfter after the last failure: %+v, want degraded", got)
	}
	got = h.judge(at(last+recentAfter+time.Second), 0, false)
	if got.State != stats.HealthOK || got.Error != "" || sinceOf(got) != last+recentAfter {
		t.Fatalf("recentAfter after the last failure: %+v, want ok since %s", got, last+recentAfter)
	}
}

// Failures and successes by turns (one connection of several broken) make
// a stage degraded, never down.
func TestHealthFlapping(t *testing.T) {
	var h health
	for d := time.Duration(0); d < 20*time.Second; d += 100 * time.Millisecond {
		if d%(200*time.Millisecond) == 0 {
			h.report(at(d), errors.New("connection reset"))
		} else {
			h.report(at(d), nil)
		}
		if got := h.judge(at(d), 0, true); got.State != stats.HealthDegraded {
			t.Fatalf("at %s: %+v, want degraded", d, got)
		}
	}
}

// A stage that gave up (no more attempts, nothing in progress) stays down
// only while failures are news: after staleAfter without one it is
// degraded, so that /readyz lets traffic in again to show whether the
// database is back. A call still in progress (a batch being retried)
// keeps it down.
func TestHealthStaleFailures(t *testing.T) {
	var h health
	h.report(at(0), errors.New("refused"))
	h.report(at(3*time.Second), errors.New("refused"))
	if got := h.judge(at(10*time.Second), 0, false); got.State != stats.HealthDown {
		t.Fatalf("7 s after the last failure: %+v, want down", got)
	}
	got := h.judge(at(3*time.Second+staleAfter), 0, false)
	if got.State != stats.HealthDegraded || got.Error != "refused" || sinceOf(got) != 3*time.Second+staleAfter {
		t.Fatalf("staleAfter after the last failure, idle: %+v, want degraded since %s", got, 3*time.Second+staleAfter)
	}
	if got := h.judge(at(3*time.Second+staleAfter+time.Second), time.Minute, true); got.State != stats.HealthDown {
		t.Fatalf("with a call in progress: %+v, want down", got)
	}
}

// A handler call that runs for stallAfter (a database that accepts the
// connection and never answers) makes the stage degraded.
func TestHealthStall(t *testing.T) {
	var h health
	if got := h.judge(at(0), stallAfter-time.Millisecond, true); got.State != stats.HealthOK {
		t.Fatalf("a call of %s: %+v, want ok", stallAfter-time.Millisecond, got)
	}
	got := h.judge(at(time.Minute), stallAfter+2*time.Second, true)
	if got.State != stats.HealthDegraded || !strings.Contains(got.Error, "a call has run for 12s") || sinceOf(got) != time.Minute-2*time.Second {
		t.Fatalf("a call of 12s: %+v, want degraded since 58s", got)
	}
}

// The oldest unfinished item's age from checkpoints: a lower bound within
// the checkpoint interval, whatever the order items finish in.
func TestAgesOldest(t *testing.T) {
	var a ages
	// Items start every 10 ms for 1 s: checkpoints at 0, 100 ms, ...
	for i := range 100 {
		a.begin(at(time.Duration(i)*10*time.Millisecond), 0)
	}
	started := a.started.Load()
	if c, ok := a.oldest(0, started, at(time.Second)); !ok || c.at != at(0) {
		t.Fatalf("nothing finished: %+v %v, want the first checkpoint", c, ok)
	}
	// 35 finished (in any order): one of the first 36 is not, started at
	// 350 ms at the latest; the bound is the checkpoint at 400 ms.
	if c, ok := a.oldest(35, started, at(time.Second)); !ok || c.at != at(400*time.Millisecond) {
		t.Fatalf("35 finished: %+v %v, want the checkpoint at 400ms", c, ok)
	}
	if _, ok := a.oldest(100, started, at(time.Second)); ok {
		t.Fatal("all finished, yet an age")
	}
	// 95 finished: the checkpoints (the last at 900 ms, item 90) bound
	// none of the 5 left, which started after it; nothing starts any
	// more (every worker stuck). The read bounds them itself: they all
	// started by then, so from a later read their age shows.
	if c, ok := a.oldest(95, started, at(time.Second)); !ok || c.at != at(time.Second) {
		t.Fatalf("95 finished, nothing starting: %+v %v, want a bound noted at 1s", c, ok)
	}
	if c, ok := a.oldest(95, started, at(3*time.Second)); !ok || c.at != at(time.Second) {
		t.Fatalf("95 finished, 2 s on: %+v %v, want the bound at 1s: an age of 2s at least", c, ok)
	}
}

// A stall shows as it happens: while a handler holds a batch, retrying a
// call that fails (stage.ReportAttempt), the stage's /stats say how old
// its oldest event is and, within downAfter, that it is down with the
// last error; once an attempt succeeds it is no longer down, and with
// nothing in its calls its oldest age is 0.
func TestReportAttemptMakesStageDown(t *testing.T) {
	var attempts atomic.Int64
	back := make(chan struct{})
	h := stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
		for {
			select {
			case <-back:
				stage.ReportAttempt(ctx, nil)
				stage.DoneAll(batch, nil)
				return nil
			default:
			}
			n := attempts.Add(1)
			stage.ReportAttempt(ctx, fmt.Errorf("attempt %d: connection refused", n))
			stage.Blocking(ctx, func() {
				select {
				case <-back:
				case <-time.After(5 * time.Millisecond): // the retry's backoff
				}
			})
		}
	})
	s, l := NewHandlerStage(stage.Settings{Name: "store", Workers: 1, Terminal: true}, h, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	post(t, s, 3)
	var st stats.Stage
	poll.Until(t, "the store down", func() bool { st = s.Stats(); return st.Health.State == stats.HealthDown })
	if !strings.Contains(st.Health.Error, "connection refused") || st.Health.Failures == 0 || st.Latency.OldestMs <= 0 {
		t.Fatalf("down: %+v, oldest %.1f ms; want the last error, failures counted, an oldest age", st.Health, st.Latency.OldestMs)
	}
	close(back)
	poll.Until(t, "the store back", func() bool {
		st = s.Stats()
		return st.Out == 3 && st.Health.State != stats.HealthDown && st.Latency.OldestMs == 0
	})
	l.CloseQueue()
	l.Wait()
}

// Handle's own errors are failed attempts, unless of a record's making
// (invalid, say); an inline stage's reports are its own, not those of the
// stage whose workers run it.
func TestHandleErrorsAndInlineHealth(t *testing.T) {
	type failure struct{ err error }
	var fail atomic.Value
	fail.Store(failure{})
	inline := stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
		stage.ReportAttempt(ctx, errors.New("inline's call failed"))
		stage.DoneAll(batch, nil)
		return nil
	})
	upstream := stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
		if f := fail.Load().(failure); f.err != nil {
			return f.err
		}
		for _, ev := range batch {
			_ = out.Emit(ctx, ev)
		}
		return nil
	})
	in, inl := NewHandlerStage(stage.Settings{Name: "inl", Inline: true}, inline, nil)
	up, upl := NewHandlerStage(stage.Settings{Name: "up", Workers: 1}, upstream, nil)
	upl.Connect(in, nil)
	for _, l := range []Lifecycle{inl, upl} {
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	post(t, up, 1)
	poll.Until(t, "the inline stage's failure", func() bool { return in.Stats().Health.Failures == 1 })
	if f := up.Stats().Health.Failures; f != 0 {
		t.Fatalf("the upstream stage counted %d failures of the inline stage's", f)
	}
	fail.Store(failure{stage.WithClass(errors.New("bad record"), stage.ErrInvalid)})
	post(t, up, 1)
	poll.Until(t, "the invalid batch failed", func() bool { return up.Stats().Errors == 1 })
	if f := up.Stats().Health.Failures; f != 0 {
		t.Fatalf("an invalid batch counted as %d failed calls", f)
	}
	fail.Store(failure{errors.New("table dropped")})
	post(t, up, 1)
	poll.Until(t, "the failed call", func() bool { return up.Stats().Health.Failures == 1 })
	if h := up.Stats().Health; h.State != stats.HealthDegraded || !strings.Contains(h.Error, "table dropped") {
		t.Fatalf("after a failed call: %+v, want degraded with its error", h)
	}
	upl.CloseQueue()
	upl.Wait()
}

// A source's oldest unfinished event's age: that of the record read
// first while nothing is finished; once one of two is finished, counts
// alone cannot tell which, and the age is the lower bound, the second's.
func TestSourceOldestEvent(t *testing.T) {
	src, _ := NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	t0 := time.Now().Add(-3 * time.Second)
	first := src.NewEventAt(nil, 1, stage.Origin{}, t0)
	second := src.NewEventAt(nil, 2, stage.Origin{}, t0.Add(time.Second))
	if ms := src.Stats().Latency.OldestMs; ms < 3000 {
		t.Fatalf("oldest %.0f ms with a record read 3 s ago unfinished", ms)
	}
	second.Done(nil)
	if ms := src.Stats().Latency.OldestMs; ms < 2000 {
		t.Fatalf("oldest %.0f ms after a later record finished, want 2 s or more", ms)
	}
	first.Done(nil)
	if ms := src.Stats().Latency.OldestMs; ms != 0 {
		t.Fatalf("oldest %.0f ms with nothing unfinished", ms)
	}
}
