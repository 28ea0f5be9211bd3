package pipeline

// This file tests a pipeline's lifecycle with test kinds: New's checks,
// start order and start failures, the two-phase stop, Run, and a million
// events through three stages.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// A million events through source → handler stage → inline stage →
// handler stage that finishes them: every one completes exactly once.
func TestMillionEventsThreeStages(t *testing.T) {
	n := 1_000_000
	if testing.Short() || rtRace {
		n = 100_000
	}
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "parse", stage.Settings{}, map[string]any{"count": n}),
		rtStage("parse", "test.pass", "mark", stage.Settings{Workers: 4, Batch: 64}, nil),
		rtStage("mark", "test.pass", "store", stage.Settings{Inline: true}, nil),
		rtStage("store", "test.finish", "", stage.Settings{Workers: 4, Batch: 64}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	rtStop(t, p)

	if got := src.ok.Load(); got != int64(n) {
		t.Errorf("completed ok: %d, want %d (failed %d)", got, n, src.failed.Load())
	}
	if d := src.dups.Load(); d != 0 {
		t.Errorf("%d events completed twice", d)
	}
	if m := src.missing(); m != 0 {
		t.Errorf("%d events never completed", m)
	}
	s := p.Stats()
	if s.State != "stopped" {
		t.Errorf("state %q after Stop", s.State)
	}
	for _, name := range []string{"parse", "mark", "store"} {
		if st := rtStageStats(t, s, name); st.In != uint64(n) || st.Errors != 0 {
			t.Errorf("stage %q: in %d errors %d, want in %d", name, st.In, st.Errors, n)
		}
	}
	if st := rtStageStats(t, s, "mark"); !st.Inline || st.Queue.Capacity != 0 {
		t.Errorf("inline stage stats: %+v", st)
	}
	if st := rtStageStats(t, s, "parse"); st.Out != uint64(n) {
		t.Errorf("parse out %d, want %d", st.Out, n)
	}
	if !src.closed.Load() {
		t.Error("source not closed")
	}
	if c := hub.closed.Load(); c != 3 {
		t.Errorf("%d handlers closed, want 3", c)
	}
	goleak.VerifyNone(t)
}

// Start runs sinks first and sources last.
func TestStartOrder(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "a", stage.Settings{}, map[string]any{"count": 0}),
		rtStage("a", "test.pass", "b", stage.Settings{Workers: 1}, nil),
		rtStage("b", "test.pass", "c", stage.Settings{Inline: true}, nil),
		rtStage("c", "test.finish", "", stage.Settings{Workers: 1}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rtStop(t, p)
	if got := strings.Join(hub.starts, ","); got != "c,b,a,src" {
		t.Errorf("start order %s, want c,b,a,src", got)
	}
}

// Stop drains what was posted before it: a slow stage holds 2000 events in
// its queue when Stop begins, and all of them complete.
func TestStopDrainsQueued(t *testing.T) {
	const n = 2000
	reg, hub := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "slow", stage.Settings{}, map[string]any{"count": n}),
		rtStage("slow", "test.gate", "end", stage.Settings{Workers: 2, Batch: 8, Capacity: 4096}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 2}, nil),
	)
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := rtClient(t)
	base := "http://" + p.AdminAddr()
	if code, _ := rtGet(t, c, base+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz while running: %d", code)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	if got := src.ok.Load() + src.failed.Load(); got != 0 {
		t.Fatalf("%d events finished before the gate opened", got)
	}

	var rep StopReport
	var stopErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 60*1e9)
		defer cancel()
		rep, stopErr = p.Stop(ctx)
	}()
	rtWaitState(t, p, "draining")
	if code, body := rtGet(t, c, base+"/readyz", ""); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 draining", code, body)
	}
	if code, _ := rtGet(t, c, base+"/healthz", ""); code != 200 {
		t.Errorf("/healthz while draining: %d", code)
	}
	close(hub.gate)
	wg.Wait()

	if stopErr != nil || rep.Forced || rep.Abandoned != 0 {
		t.Fatalf("Stop: %+v %v, want a complete drain", rep, stopErr)
	}
	if got := src.ok.Load(); got != n {
		t.Errorf("%d of %d events completed", got, n)
	}
	if src.dups.Load() != 0 || src.missing() != 0 {
		t.Errorf("dups %d missing %d", src.dups.Load(), src.missing())
	}
	// Idempotent: the same report again, at once.
	rep2, err2 := p.Stop(context.Background())
	if rep2 != rep || err2 != nil {
		t.Errorf("second Stop: %+v %v, want %+v nil", rep2, err2, rep)
	}
	if p.AdminAddr() == "" {
		t.Error("AdminAddr forgot the address")
	}
	if err := p.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Stop: %v, want ErrClosed", err)
	}
	goleak.VerifyNone(t)
}

// When the drain deadline passes, phase two aborts the stage, reports the
// events still queued as abandoned and joins every goroutine.
func TestStopForcedAbandons(t *testing.T) {
	const n = 1000
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "stuck", stage.Settings{}, map[string]any{"count": n}),
		rtStage("stuck", "test.block", "end", stage.Settings{Workers: 2, Batch: 1, Capacity: 2048}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)

	ctx, cancel := context.WithCancel(context.Background())
	var rep StopReport
	var stopErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep, stopErr = p.Stop(ctx)
	}()
	rtWaitState(t, p, "draining")
	cancel() // the drain deadline
	wg.Wait()

	if !rep.Forced || rep.Abandoned == 0 {
		t.Fatalf("report %+v, want forced with abandoned events", rep)
	}
	if !errors.Is(stopErr, context.Canceled) || !strings.Contains(stopErr.Error(), "abandoned") {
		t.Errorf("Stop error %v, want one wrapping context.Canceled and counting the abandoned", stopErr)
	}
	// Every event is accounted for exactly once: finished (the batches the
	// blocked workers held fail with the context's error) or abandoned.
	if got := uint64(src.ok.Load()+src.failed.Load()) + rep.Abandoned; got != n {
		t.Errorf("ok %d + failed %d + abandoned %d = %d, want %d",
			src.ok.Load(), src.failed.Load(), rep.Abandoned, got, n)
	}
	if src.dups.Load() != 0 {
		t.Errorf("%d events finished twice", src.dups.Load())
	}
	if !src.closed.Load() || hub.closed.Load() != 2 {
		t.Errorf("source closed %v, handlers closed %d; want everything closed", src.closed.Load(), hub.closed.Load())
	}
	goleak.VerifyNone(t)
}

// A later Stop whose context ends forces the phase two of a Stop that is
// still draining.
func TestSecondStopForces(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "stuck", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("stuck", "test.block", "", stage.Settings{Workers: 1, Batch: 1}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hub.source(t, "src").waitEmitted(t)
	// The one worker holds the first event (the other nine are queued).
	poll.Until(t, "the worker takes the first event", func() bool { return rtStageStats(t, p.Stats(), "stuck").In == 1 })
	var first error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, first = p.Stop(context.Background()) // would wait forever
	}()
	rtWaitState(t, p, "draining")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := p.Stop(ctx)
	wg.Wait()
	if !rep.Forced || rep.Abandoned != 9 {
		t.Errorf("report %+v, want forced with 9 abandoned", rep)
	}
	if !errors.Is(err, errForced) || !errors.Is(first, errForced) {
		t.Errorf("errors %v / %v, want both to wrap errForced", err, first)
	}
	// As the docs say of a forced stop: the error wraps the forcing
	// Stop's ctx.Err().
	if !errors.Is(err, context.Canceled) || !errors.Is(first, context.Canceled) {
		t.Errorf("errors %v / %v, want both to wrap the later Stop's context.Canceled", err, first)
	}
	goleak.VerifyNone(t)
}

// A panicking handler fails only its batch: the other events complete, the
// panics are counted, and the single worker keeps serving.
func TestPanicFailsOnlyItsBatch(t *testing.T) {
	const n = 1000
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "risky", stage.Settings{}, map[string]any{"count": n}),
		rtStage("risky", "test.panic", "end", stage.Settings{Workers: 1, Batch: 1}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	rtStop(t, p)
	if ok, failed := src.ok.Load(), src.failed.Load(); ok != n-n/10 || failed != n/10 {
		t.Errorf("ok %d failed %d, want %d and %d", ok, failed, n-n/10, n/10)
	}
	st := rtStageStats(t, p.Stats(), "risky")
	if st.Panics != n/10 || st.Errors != n/10 || st.Out != n-n/10 {
		t.Errorf("stage stats %+v, want %d panics and errors, %d out", st, n/10, n-n/10)
	}
	goleak.VerifyNone(t)
}

// When a stage fails to start, what had started is stopped and joined,
// every handler is closed, the source never starts, and the pipeline is
// closed for good.
func TestStartFailureStopsStarted(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "db", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("db", "test.broken", "end", stage.Settings{Workers: 2}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 2}, nil),
	), reg)
	err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `stage "db"`) || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("Start: %v, want the stage's error", err)
	}
	if got := strings.Join(hub.starts, ","); got != "end,db" {
		t.Errorf("started %s, want end,db", got)
	}
	if hub.closed.Load() != 2 {
		t.Errorf("%d handlers closed, want 2", hub.closed.Load())
	}
	if src := hub.source(t, "src"); src.closed.Load() {
		t.Error("a source that never started was closed")
	}
	if s := p.Stats().State; s != "stopped" {
		t.Errorf("state %q", s)
	}
	// No drain ran, so none was cut short: the report is not forced (it
	// said so, with a nil error).
	if rep, err := p.Stop(context.Background()); err != nil || rep.Forced {
		t.Errorf("Stop after a failed Start: %+v, %v; want no error and not forced", rep, err)
	}
	if err := p.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start again: %v, want ErrClosed", err)
	}
	goleak.VerifyNone(t)
}

// Stop before Start closes the handlers and nothing starts afterwards.
func TestStopBeforeStart(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "end", stage.Settings{}, nil),
		rtStage("end", "test.finish", "", stage.Settings{}, nil),
	), reg)
	rep, err := p.Stop(context.Background())
	if err != nil || rep.Forced || rep.Abandoned != 0 {
		t.Fatalf("Stop: %+v %v", rep, err)
	}
	if hub.closed.Load() != 1 || len(hub.starts) != 0 {
		t.Errorf("closed %d started %v", hub.closed.Load(), hub.starts)
	}
	if err := p.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Stop: %v, want ErrClosed", err)
	}
}

// A pipeline without sources, fed by the embedding program: what is left
// queued when phase two runs is reported as abandoned.
func TestNoSourceAbandonedQueued(t *testing.T) {
	reg, _ := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("stuck", "test.block", "", stage.Settings{Workers: 1, Batch: 1}, nil),
	), reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	feeder, life := engine.NewSourceStage(stage.Settings{Name: "feeder"}, nil, nil)
	life.Connect(p.byName["stuck"], nil)
	em := feeder.NewEmitter()
	for i := 0; i < 5; i++ {
		if err := em.Emit(context.Background(), feeder.NewEvent(nil, uint64(i), stage.Origin{})); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := p.Stop(ctx)
	if !rep.Forced || !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop: %+v %v", rep, err)
	}
	// One event was taken by the worker (or none, if it had not run yet).
	if rep.Abandoned != 4 && rep.Abandoned != 5 {
		t.Errorf("abandoned %d, want 4 or 5", rep.Abandoned)
	}
	if left := feeder.InFlight(); left != rep.Abandoned {
		t.Errorf("feeder has %d unfinished, report says %d", left, rep.Abandoned)
	}
	goleak.VerifyNone(t)
}

// Run stops with a complete drain when its context ends.
func TestRunDrainsOnCancel(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "end", stage.Settings{}, map[string]any{"count": 500}),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 2}, nil),
	), reg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	rtWaitState(t, p, "running")
	src := hub.source(t, "src")
	src.waitEmitted(t)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if src.ok.Load() != 500 {
		t.Errorf("%d of 500 completed", src.ok.Load())
	}
}

func TestNewErrors(t *testing.T) {
	reg, hub := rtRegistry(t)
	at := func(line int) Pos { return Pos{File: "p.yaml", Line: line, Col: 3} }
	st := func(name, kind, next string, line int, values map[string]any) *StageConfig {
		sc := rtStage(name, kind, next, stage.Settings{}, values)
		sc.Pos = at(line)
		return sc
	}
	withField := func(sc *StageConfig, field string, line int) *StageConfig {
		sc.FieldPos = map[string]Pos{field: {File: "p.yaml", Line: line, Col: 9}}
		return sc
	}
	cases := []struct {
		name   string
		stages []*StageConfig
		want   []string // each error, in order
	}{
		{"unknown kind", []*StageConfig{st("a", "nope", "", 2, nil)},
			[]string{`p.yaml:2:3: stage "a": unknown kind "nope"`}},
		{"field error at the field, secret redacted", []*StageConfig{
			withField(st("db", "test.secret", "", 4, map[string]any{"dsn": "mysql://u:hunter2@h/db"}), "dsn", 5)},
			[]string{`p.yaml:5:9: stage "db": dsn: cannot parse "mysql://u:xxxxx@h/db"`}},
		{"dangling next", []*StageConfig{st("a", "test.pass", "b", 2, nil)},
			[]string{`p.yaml:2:3: stage "a": next "b" is not a stage; stages: a`}},
		{"route to a source", []*StageConfig{
			st("src", "test.seq", "a", 2, nil), st("a", "test.pass", "src", 3, nil)},
			[]string{`p.yaml:3:3: stage "a": next "src" is a source (kind "test.seq"): sources take no input`}},
		{"cycle", []*StageConfig{
			st("a", "test.pass", "b", 2, nil), st("b", "test.pass", "a", 3, nil), st("c", "test.finish", "", 4, nil)},
			[]string{`p.yaml:2:3: stage "a": routes form a cycle: a -> b -> a`}},
		{"duplicate", []*StageConfig{st("a", "test.finish", "", 2, nil), st("a", "test.finish", "", 3, nil)},
			[]string{`p.yaml:3:3: stage "a" is declared twice`}},
		{"terminal with next", []*StageConfig{st("a", "test.finish", "b", 2, nil), st("b", "test.finish", "", 3, nil)},
			[]string{`p.yaml:2:3: stage "a": kind "test.finish" finishes events itself and takes no next`}},
		{"inline source", []*StageConfig{func() *StageConfig {
			sc := st("src", "test.seq", "", 2, nil)
			sc.Settings.Inline = true
			return sc
		}()}, []string{`p.yaml:2:3: stage "src": a source (kind "test.seq") cannot be inline: nothing upstream calls it`}},
		{"several at once", []*StageConfig{st("a", "nope", "", 2, nil), st("b", "test.seq", "", 3, map[string]any{"count": -1})},
			[]string{`p.yaml:2:3: stage "a": unknown kind "nope"`, `p.yaml:3:3: stage "b": count: must not be negative`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := hub.closed.Load()
			_, err := New(&Config{Name: "x", Stages: c.stages}, Options{Registry: reg, Logger: nil})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("New: %v (%T), want Errors", err, err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("the secret leaked into the error")
			}
			built := 0
			for _, sc := range c.stages {
				if k, ok := reg.Lookup(sc.Kind); ok && k.NewHandler != nil {
					built++
				}
			}
			// Handlers built before New gave up are closed (a failed
			// constructor has nothing to close).
			if closed := hub.closed.Load() - before; closed > int64(built) {
				t.Errorf("%d handlers closed, only %d could be built", closed, built)
			}
		})
	}
	if _, err := New(nil, Options{Registry: reg}); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(&Config{Name: "x"}, Options{}); err == nil {
		t.Error("New without a registry succeeded")
	}
	if _, err := New(&Config{Name: "x", Log: LogConfig{Level: "loud"}}, Options{Registry: reg}); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("New with a bad log level: %v", err)
	}
}

// A Config built in code without a name is refused as the loader refuses
// a file without one, in the loader's words: the name is in /stats, the
// logs, the metrics and the transports' stream names. A name of spaces is
// as empty as the loader finds it.
func TestNewRefusesAnEmptyName(t *testing.T) {
	reg, _ := rtRegistry(t)
	for _, name := range []string{"", "  "} {
		cfg := rtConfig(rtStage("src", "test.seq", "out", stage.Settings{}, nil),
			rtStage("out", "test.finish", "", stage.Settings{}, nil))
		cfg.Name = name
		p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
		if err == nil {
			_, _ = p.Stop(context.Background())
			t.Fatalf("New with the name %q succeeded", name)
		}
		if want := "-: name must not be empty"; err.Error() != want {
			t.Errorf("New with the name %q: %q, want %q", name, err, want)
		}
	}
}

// Check refuses what New refuses before building a stage, in New's words,
// and builds nothing: pipectl run calls it before it starts a database.
func TestCheckIsNewWithoutBuilding(t *testing.T) {
	cfg := func() *Config {
		return rtConfig(rtStage("src", "test.seq", "out", stage.Settings{}, nil),
			rtStage("out", "test.finish", "", stage.Settings{}, nil))
	}
	unnamed := cfg()
	unnamed.Name = ""
	verbose := cfg() // New makes its logger from Log when given none
	verbose.Log.Level = "verbose"
	for _, c := range []struct {
		cfg    *Config
		opts   Options
		bad    bool
		ownLog bool // no Options.Logger
	}{
		{cfg(), Options{Stages: []string{"src", "bogus"}}, true, false},
		{cfg(), Options{AdminListen: "0.0.0.0:0"}, true, false},
		{unnamed, Options{}, true, false},
		{verbose, Options{}, true, true},
		{verbose, Options{}, false, false},
		{cfg(), Options{}, false, false},
	} {
		reg, hub := rtRegistry(t)
		c.opts.Registry = reg
		if !c.ownLog {
			c.opts.Logger = zap.NewNop()
		}
		cerr := Check(c.cfg, c.opts)
		if len(hub.sources) != 0 {
			t.Errorf("Check built a source")
		}
		if !c.bad {
			if cerr != nil {
				t.Errorf("Check of a good config: %v", cerr)
			}
			continue
		}
		_, nerr := New(c.cfg, c.opts)
		if cerr == nil || nerr == nil || cerr.Error() != nerr.Error() {
			t.Errorf("Check: %v\nNew: %v\nwant the same error", cerr, nerr)
		}
	}
}

// A Config built in code routes a kind's Ref fields as a loaded one does:
// the router's targets, named only in its routes and mirror, are its
// routes, its events reach them, and a target that is no stage is
// reported at its field.
func TestNewRoutesRefFields(t *testing.T) {
	reg, hub := rtRegistry(t)
	var routes []string
	if err := reg.Register(stage.Kind{Name: "t.router", Doc: "routes by Seq",
		Fields: []stage.Field{
			{Name: "routes", Type: stage.ObjectList, Doc: "targets", Fields: []stage.Field{
				{Name: "next", Type: stage.String, Ref: true, Doc: "target"},
			}},
			{Name: "mirror", Type: stage.StringList, Ref: true, Doc: "more targets"},
		},
		NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
			routes = env.Routes
			rs := cfg.Objects("routes")
			even, odd := rs[0].String("next"), rs[1].String("next")
			return stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
				for _, ev := range b {
					to := even
					if ev.Seq%2 == 1 {
						to = odd
					}
					if err := out.EmitTo(ctx, to, ev); err != nil {
						return err
					}
				}
				return nil
			}), nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	router := func(odd string) *StageConfig {
		sc := rtStage("rt", "t.router", "", stage.Settings{}, map[string]any{
			"routes": []stage.Config{stage.NewConfig(map[string]any{"next": "a"}), stage.NewConfig(map[string]any{"next": odd})},
			"mirror": []string{"c"},
		})
		sc.FieldPos = map[string]Pos{"routes.1.next": {File: "test.yaml", Line: 4, Col: 9}}
		return sc
	}
	sinks := []*StageConfig{
		rtStage("a", "test.finish", "", stage.Settings{}, nil),
		rtStage("b", "test.finish", "", stage.Settings{}, nil),
		rtStage("c", "test.finish", "", stage.Settings{}, nil),
	}

	_, err := New(rtConfig(append([]*StageConfig{router("zz")}, sinks...)...), Options{Registry: reg, Logger: zap.NewNop()})
	if want := `test.yaml:4:9: stage "rt": routes.1.next "zz" is not a stage; stages: rt, a, b, c`; err == nil || err.Error() != want {
		t.Fatalf("New with a bad target: %v, want %s", err, want)
	}

	const n = 100
	p := rtNew(t, rtConfig(append([]*StageConfig{
		rtStage("src", "test.seq", "rt", stage.Settings{}, map[string]any{"count": n}), router("b")}, sinks...)...), reg)
	if got := strings.Join(routes, ","); got != "a,b,c" {
		t.Fatalf("the router's routes: %q, want a,b,c", got)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	rtStop(t, p)
	if ok := src.ok.Load(); ok != n {
		t.Errorf("%d events finished ok, want %d (failed %d)", ok, n, src.failed.Load())
	}
	s := p.Stats()
	if a, b := rtStageStats(t, s, "a").In, rtStageStats(t, s, "b").In; a != n/2 || b != n/2 {
		t.Errorf("a took %d, b %d; want %d each", a, b, n/2)
	}
}

// A kind's constructor sees the stage's common settings with defaults
// filled in (db.postgres sizes its pool by the stage's workers this way).
func TestConstructorSeesSettings(t *testing.T) {
	reg := stage.NewRegistry()
	var got stage.Settings
	if err := reg.Register(stage.Kind{Name: "t.peek", Terminal: true, NewHandler: func(_ stage.Config, env stage.Env) (stage.Handler, error) {
		got = env.Settings
		return stage.HandlerFunc(func(context.Context, []*stage.Event, stage.Emitter) error { return nil }), nil
	}}); err != nil {
		t.Fatal(err)
	}
	cfg := rtConfig(rtStage("sink", "t.peek", "", stage.Settings{Workers: 7, Capacity: 99}, nil))
	p := rtNew(t, cfg, reg)
	if _, err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Name != "sink" || got.Workers != 7 || got.Capacity != 99 || got.Concurrency == 0 || got.Batch == 0 {
		t.Fatalf("constructor saw settings %+v", got)
	}
}

// hangStart is a terminal handler whose Start returns only when its
// context ends (a database that never answers, under a start without a
// deadline).
type hangStart struct{ starting chan struct{} }

func (h hangStart) Start(ctx context.Context) error {
	close(h.starting)
	<-ctx.Done()
	return ctx.Err()
}

func (hangStart) Handle(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
	stage.DoneAll(b, nil)
	return nil
}

// Stop cancels a Start in progress instead of waiting for it: Start was
// given no deadline, and a stage's start that never ends held Stop, and
// its deadline, for ever. Start fails naming the stage; nothing leaks.
func TestStopCancelsAStartInProgress(t *testing.T) {
	reg, _ := rtRegistry(t)
	h := hangStart{starting: make(chan struct{})}
	if err := reg.Register(stage.Kind{Name: "test.hang", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return h, nil }}); err != nil {
		t.Fatal(err)
	}
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "db", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("db", "test.hang", "", stage.Settings{}, nil),
	), reg)
	started := make(chan error, 1)
	go func() { started <- p.Start(context.Background()) }()
	<-h.starting
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Stop returned only at its deadline")
	}
	err := <-started
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `"db"`) {
		t.Errorf("Start: %v, want its context cancelled, naming the stage", err)
	}
	if s := p.Stats().State; s != "stopped" {
		t.Errorf("state %q", s)
	}
	goleak.VerifyNone(t)
}

// Run returns once Stop is called from elsewhere, with the same result:
// it waited for a source that never ends its input.
func TestRunReturnsWhenStopped(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "end", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("end", "test.finish", "", stage.Settings{}, nil),
	), reg)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(context.Background()) }()
	src := hub.source(t, "src")
	src.waitEmitted(t)
	if _, err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	goleak.VerifyNone(t)
}

// A Stop called from elsewhere while Run runs keeps its own deadline:
// Run waits for its result instead of stopping with the drain deadline,
// which forced phase two on a Stop that had asked for a full drain.
func TestRunLeavesAnOutsideStopItsDeadline(t *testing.T) {
	reg, hub := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "hold", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("hold", "test.gate", "end", stage.Settings{}, nil),
		rtStage("end", "test.finish", "", stage.Settings{}, nil),
	)
	cfg.Drain = time.Millisecond
	p := rtNew(t, cfg, reg)
	before, cancelBefore := p.drainContext()
	if _, ok := before.Deadline(); !ok {
		t.Error("Run would stop without the drain deadline before any Stop")
	}
	cancelBefore()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(context.Background()) }()
	hub.source(t, "src").waitEmitted(t)
	stopped := make(chan StopReport, 1)
	go func() {
		rep, err := p.Stop(context.Background())
		if err != nil {
			t.Errorf("Stop: %v", err)
		}
		stopped <- rep
	}()
	rtWaitState(t, p, "draining")
	// What Run stops with once the outside Stop has begun: no deadline,
	// where its own (1 ms) would force the outside Stop's phase two.
	dctx, cancel := p.drainContext()
	if dl, ok := dctx.Deadline(); ok {
		t.Errorf("Run would stop with a deadline (%v) on a Stop called elsewhere", time.Until(dl))
	}
	cancel()
	close(hub.gate)
	if rep := <-stopped; rep.Forced || rep.Abandoned != 0 {
		t.Fatalf("the outside Stop was forced: %+v", rep)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A Config built in Go has its common knobs checked as the loader checks
// a file's: a workers of 1<<20 started a million goroutines, and a
// negative capacity or linger went through.
func TestNewChecksSettings(t *testing.T) {
	reg, _ := rtRegistry(t)
	bad := rtStage("sink", "test.finish", "", stage.Settings{Workers: 1 << 20, Concurrency: -1, Capacity: stage.MaxCapacity + 1,
		Batch: -2, MaxBytes: -1, Linger: -time.Second}, nil)
	bad.FieldPos = map[string]Pos{"workers": {File: "code.yaml", Line: 3, Col: 14}}
	cfg := &Config{Name: "bounds", Stages: []*StageConfig{
		rtStage("src", "test.seq", "sink", stage.Settings{}, map[string]any{"count": 1}),
		bad,
	}}
	_, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("New: %v, want positioned errors", err)
	}
	got := err.Error()
	for _, want := range []string{
		`code.yaml:3:14: stage "sink": workers: 1048576 is out of range: want 1 to 65536, or 0 for the default`,
		`stage "sink": concurrency: -1 is out of range`,
		`stage "sink": queue.capacity: 16777217 is out of range`,
		`stage "sink": batch.max: -2 is out of range`,
		`stage "sink": queue.max_bytes: -1 is out of range`,
		`stage "sink": batch.linger: -1s is negative`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("New: %s\nwant it to say %q", got, want)
		}
	}
}
