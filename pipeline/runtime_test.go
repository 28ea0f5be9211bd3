package pipeline

// This file holds the test kinds and helpers the runtime tests share: a
// source, a handler and a registry of them, and building, stopping and
// querying a pipeline.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// The test kinds below are registered from test code, as an embedding
// program would register its own; the tests build their Config in code.

// rtHub connects the test kinds' instances to the test that made them.
type rtHub struct {
	mu      sync.Mutex
	sources map[string]*rtSource
	gate    chan struct{} // test.gate handlers wait until it is closed
	closed  atomic.Int64  // Close calls on test handlers
	starts  []string      // stage names in Start order
}

func (h *rtHub) source(t *testing.T, name string) *rtSource {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sources[name]
	if s == nil {
		t.Fatalf("no source %q was built", name)
	}
	return s
}

func (h *rtHub) started(name string) {
	h.mu.Lock()
	h.starts = append(h.starts, name)
	h.mu.Unlock()
}

// rtSource emits count events numbered 0..count-1 and keeps a bitmap of
// their completions, so that a test sees loss and duplication.
type rtSource struct {
	hub   *rtHub
	name  string
	count int
	size  int // payload bytes of each event (0: none)
	rt    stage.SourceRuntime

	ctx    context.Context // ends on Close: a post blocked on a full queue returns
	cancel context.CancelFunc
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	all    chan struct{} // closed once every event is emitted

	seen             []atomic.Uint64
	ok, failed, dups atomic.Int64
	closed           atomic.Bool
}

var (
	_ stage.Source    = (*rtSource)(nil)
	_ stage.Completer = (*rtSource)(nil)
)

func (s *rtSource) Start(_ context.Context, rt stage.SourceRuntime) error {
	s.hub.started(s.name)
	s.rt = rt
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return nil
}

func (s *rtSource) run() {
	defer s.wg.Done()
	em := s.rt.NewEmitter()
	defer em.Flush(s.ctx)
	for i := 0; i < s.count; i++ {
		select {
		case <-s.stop:
			return
		default:
		}
		var payload []byte
		if s.size > 0 {
			payload = make([]byte, s.size)
		}
		_ = em.Emit(s.ctx, s.rt.NewEvent(payload, uint64(i), stage.Origin{To: s}))
		if i%64 == 63 {
			em.Flush(s.ctx)
		}
	}
	em.Flush(s.ctx)
	close(s.all)
}

func (s *rtSource) StopInput(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel() // unblock the emitter; Close joins it
		<-done
		return ctx.Err()
	}
}

func (s *rtSource) Drain(ctx context.Context) error { return s.rt.WaitFinished(ctx) }

func (s *rtSource) Close() error {
	s.closed.Store(true)
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *rtSource) Complete(ev *stage.Event, err error) {
	bit := uint64(1) << (ev.Seq % 64)
	if s.seen[ev.Seq/64].Or(bit)&bit != 0 {
		s.dups.Add(1)
	}
	if err != nil {
		s.failed.Add(1)
	} else {
		s.ok.Add(1)
	}
}

// Figures reports fixed counters, for the admin endpoint's tests.
func (s *rtSource) Figures(st *stats.Stage) {
	st.Source = &stats.Source{
		Connections:    stats.Conns{Accepted: 7, Closed: 5, Refused: 1},
		ProtocolErrors: map[string]uint64{"bad_frame": 2},
		Nacks:          stats.Nacks{Invalid: 3, Busy: 4},
		BytesIn:        1234,
		Drops:          stats.Drops{Oversized: 6},
	}
}

// waitEmitted waits until the source has emitted all of its events.
func (s *rtSource) waitEmitted(t *testing.T) {
	t.Helper()
	select {
	case <-s.all:
	case <-time.After(120 * time.Second):
		t.Fatalf("source %q: not every event was emitted", s.name)
	}
}

// missing counts the events that never completed.
func (s *rtSource) missing() int {
	n := 0
	for i := 0; i < s.count; i++ {
		if s.seen[i/64].Load()&(1<<(i%64)) == 0 {
			n++
		}
	}
	return n
}

// rtHandler is a handler of the test kinds; it counts Close calls and
// records Start calls.
type rtHandler struct {
	hub    *rtHub
	name   string
	handle stage.HandlerFunc
	fail   error // returned by Start
}

func (h *rtHandler) Handle(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
	return h.handle(ctx, b, out)
}

func (h *rtHandler) Start(context.Context) error {
	h.hub.started(h.name)
	return h.fail
}

func (h *rtHandler) Close() error {
	h.hub.closed.Add(1)
	return nil
}

var (
	_ interface{ Start(context.Context) error } = (*rtHandler)(nil)
	_ interface{ Close() error }                = (*rtHandler)(nil)
)

func rtPass(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
	for _, ev := range b {
		_ = out.Emit(ctx, ev)
	}
	return nil
}

// rtRegistry returns a registry of the test kinds and the hub they report
// to:
//
//	test.seq     source: emits `count` events of `size` bytes, then nothing
//	test.pass    hands every event on
//	test.finish  finishes every event (terminal)
//	test.gate    waits for hub.gate to close, then hands events on
//	test.block   waits for its context to end and fails the batch
//	test.panic   panics on a batch holding an event whose Seq%10 == 0
//	test.secret  takes a secret dsn; fails with a FieldError when bad
//	test.broken  Start fails
func rtRegistry(t *testing.T) (*stage.Registry, *rtHub) {
	t.Helper()
	hub := &rtHub{sources: map[string]*rtSource{}, gate: make(chan struct{})}
	reg := stage.NewRegistry()
	handler := func(fn stage.HandlerFunc) func(stage.Config, stage.Env) (stage.Handler, error) {
		return func(_ stage.Config, env stage.Env) (stage.Handler, error) {
			return &rtHandler{hub: hub, name: env.Stage, handle: fn}, nil
		}
	}
	kinds := []stage.Kind{
		{Name: "test.seq", Doc: "emits count events",
			Fields: []stage.Field{
				{Name: "count", Type: stage.Int, Default: 10, Doc: "events to emit"},
				{Name: "size", Type: stage.Size, Doc: "payload bytes of each event"},
			},
			NewSource: func(cfg stage.Config, env stage.Env) (stage.Source, error) {
				n := cfg.Int("count")
				if n < 0 {
					return nil, &stage.FieldError{Field: "count", Err: errors.New("must not be negative")}
				}
				s := &rtSource{hub: hub, name: env.Stage, count: n, size: int(cfg.Size("size")), stop: make(chan struct{}),
					all: make(chan struct{}), seen: make([]atomic.Uint64, n/64+1)}
				hub.mu.Lock()
				hub.sources[env.Stage] = s
				hub.mu.Unlock()
				return s, nil
			}},
		{Name: "test.pass", NewHandler: handler(rtPass)},
		{Name: "test.finish", Terminal: true, NewHandler: handler(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
			for _, ev := range b {
				ev.Done(nil)
			}
			return nil
		})},
		{Name: "test.gate", NewHandler: handler(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			select {
			case <-hub.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			return rtPass(ctx, b, out)
		})},
		{Name: "test.block", NewHandler: handler(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-ctx.Done()
			return ctx.Err()
		})},
		{Name: "test.panic", NewHandler: handler(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			for _, ev := range b {
				if ev.Seq%10 == 0 {
					panic(fmt.Sprintf("bad event %d", ev.Seq))
				}
			}
			return rtPass(ctx, b, out)
		})},
		{Name: "test.secret",
			Fields: []stage.Field{{Name: "dsn", Type: stage.String, Required: true, Secret: true, Doc: "where to connect"}},
			NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
				if dsn := cfg.String("dsn"); len(dsn) < 12 || dsn[:11] != "postgres://" {
					return nil, &stage.FieldError{Field: "dsn", Err: fmt.Errorf("cannot parse %q", dsn)}
				}
				return &rtHandler{hub: hub, name: env.Stage, handle: rtPass}, nil
			}},
		{Name: "test.broken", NewHandler: func(_ stage.Config, env stage.Env) (stage.Handler, error) {
			return &rtHandler{hub: hub, name: env.Stage, handle: rtPass, fail: errors.New("no database")}, nil
		}},
	}
	for _, k := range kinds {
		if err := reg.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	// The queue transport, as pipectl registers it: pipeline itself knows
	// none (a test may import natsq; the package does not).
	if err := registerTransports(reg); err != nil {
		t.Fatal(err)
	}
	return reg, hub
}

// rtStage is one stage of a Config built in code.
func rtStage(name, kind, next string, set stage.Settings, values map[string]any) *StageConfig {
	return &StageConfig{
		Name:     name,
		Kind:     kind,
		Next:     next,
		Settings: set,
		Config:   stage.NewConfig(values),
		Pos:      Pos{File: "test.yaml", Line: 1, Col: 1},
	}
}

func rtConfig(stages ...*StageConfig) *Config {
	return &Config{Name: "test", Stages: stages}
}

// rtNew builds a pipeline with a silent logger.
func rtNew(t *testing.T, cfg *Config, reg *stage.Registry) *Pipeline {
	t.Helper()
	p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// A test that fails half way still joins everything: phase two at
	// once. After a Stop of its own this returns that Stop's result.
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = p.Stop(ctx)
	})
	return p
}

// rtStop stops p with a generous deadline and checks that it drained.
func rtStop(t *testing.T, p *Pipeline) StopReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := p.Stop(ctx)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if rep.Forced || rep.Abandoned != 0 {
		t.Fatalf("Stop: %+v, want a complete drain", rep)
	}
	return rep
}

// rtWaitState polls p until it is in state want.
func rtWaitState(t *testing.T, p *Pipeline, want string) {
	t.Helper()
	poll.Until(t, "state "+want, func() bool { return p.Stats().State == want })
}

func rtStageStats(t *testing.T, s Stats, name string) stats.Stage {
	t.Helper()
	for _, st := range s.Stages {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no stage %q in stats", name)
	return stats.Stage{}
}

// rtClient is an HTTP client that keeps no connection open, so that no
// goroutine outlives a test.
func rtClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func rtGet(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}
