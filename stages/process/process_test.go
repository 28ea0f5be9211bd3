package process

// This file holds what the package's tests share (TestMain, a collector
// and a harness to build and run a handler) and tests registration.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var zapNop = zap.NewNop()

// completions is the Origin.To of test events: it records how each one was
// finished.
type completions struct {
	mu   sync.Mutex
	ok   int
	errs []string
	seqs map[uint64]string // seq -> "ok" or the error text
	// class is stage.ErrorClass of each error, by seq.
	class map[uint64]string
}

func (c *completions) Complete(ev *stage.Event, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seqs == nil {
		c.seqs = map[uint64]string{}
		c.class = map[uint64]string{}
	}
	if err != nil {
		c.errs = append(c.errs, err.Error())
		c.seqs[ev.Seq] = err.Error()
		c.class[ev.Seq] = stage.ErrorClass(err)
		return
	}
	c.ok++
	c.seqs[ev.Seq] = "ok"
}

// emitted is one Emit ("" next) or EmitTo call.
type emitted struct {
	next string
	ev   *stage.Event
}

// collector is an Emitter that records what it is given.
type collector struct {
	mu    sync.Mutex
	calls []emitted
}

func (c *collector) Emit(ctx context.Context, ev *stage.Event) error {
	return c.EmitTo(ctx, "", ev)
}

func (c *collector) Flush(context.Context) {}

func (c *collector) EmitTo(_ context.Context, next string, ev *stage.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, emitted{next, ev})
	return nil
}

// seqs returns the sequence numbers emitted to next.
func (c *collector) seqs(next string) []uint64 {
	var s []uint64
	for _, e := range c.calls {
		if e.next == next {
			s = append(s, e.ev.Seq)
		}
	}
	return s
}

var testRegistry = func() *stage.Registry {
	r := stage.NewRegistry()
	if err := Register(r); err != nil {
		panic(err)
	}
	return r
}()

// build constructs a handler of kind from values, filling defaults from the
// kind's spec as the loader does.
func build(t testing.TB, r *stage.Registry, kind string, values map[string]any, routes ...string) (stage.Handler, error) {
	t.Helper()
	k, ok := r.Lookup(kind)
	if !ok {
		t.Fatalf("kind %q not registered", kind)
	}
	cfg, err := stage.Bind(k.Fields, stage.NewConfig(values))
	if err != nil {
		return nil, err
	}
	return k.NewHandler(cfg, stage.Env{Stage: "t", Logger: zapNop, Routes: routes})
}

func mustBuild(t testing.TB, kind string, values map[string]any, routes ...string) stage.Handler {
	t.Helper()
	h, err := build(t, testRegistry, kind, values, routes...)
	if err != nil {
		t.Fatalf("build %s: %v", kind, err)
	}
	return h
}

// harness runs a handler under test as a pipeline runs it: the events a
// source stage, "src", makes are emitted to the handler running as an
// inline stage named "t" (the name build gives it). So the stage under
// test holds the events while the handler runs, and a refusal names it
// (`stage "t": ...`) as a client reads it. What the handler emits is
// collected rather than handed on.
type harness struct {
	src  *engine.Stage
	done *completions // the Origin.To of the events
	out  *collector
	err  error // what the handler's Handle returned
}

func newHarness(h stage.Handler) *harness {
	x := &harness{done: &completions{}, out: &collector{}}
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, zapNop)
	st, _ := engine.NewHandlerStage(stage.Settings{Name: "t", Inline: true},
		stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
			x.err = h.Handle(ctx, batch, x.out)
			return x.err
		}), zapNop)
	srcLife.Connect(st, nil)
	x.src = src
	return x
}

// newEvent makes an event of the source, numbered seq.
func (x *harness) newEvent(payload []byte, seq uint64) *stage.Event {
	return x.src.NewEvent(payload, seq, stage.Origin{To: x.done})
}

// handle hands evs to the handler as one batch, as the source's emitter
// does. The events the handler finished are recycled once it returns:
// the caller may still ask whether they are Finished, not read them.
func (x *harness) handle(t testing.TB, evs []*stage.Event) {
	t.Helper()
	ctx := context.Background()
	em := x.src.NewEmitter()
	for _, ev := range evs {
		if err := em.Emit(ctx, ev); err != nil {
			t.Fatalf("Emit: %v", err)
		}
	}
	em.Flush(ctx)
	if x.err != nil {
		t.Fatalf("Handle: %v", x.err)
	}
}

// run hands the payloads to h as one batch of events numbered from 1.
func run(t testing.TB, h stage.Handler, payloads ...string) (*collector, *completions, []*stage.Event) {
	t.Helper()
	x := newHarness(h)
	evs := make([]*stage.Event, len(payloads))
	for i, p := range payloads {
		evs[i] = x.newEvent([]byte(p), uint64(i+1))
	}
	x.handle(t, evs)
	// Every event is either emitted or finished, never both.
	for _, ev := range evs {
		emittedIt := false
		for _, c := range x.out.calls {
			emittedIt = emittedIt || c.ev == ev
		}
		if emittedIt == ev.Finished() {
			t.Fatalf("event %d: emitted=%v finished=%v", ev.Seq, emittedIt, ev.Finished())
		}
	}
	return x.out, x.done, evs
}

// runFields hands events with the given fields (no payload) to h.
func runFields(t testing.TB, h stage.Handler, fields ...map[string]any) (*collector, *completions) {
	t.Helper()
	x := newHarness(h)
	evs := make([]*stage.Event, len(fields))
	for i, f := range fields {
		evs[i] = x.newEvent(nil, uint64(i+1))
		setFields(evs[i], f)
	}
	x.handle(t, evs)
	return x.out, x.done
}

// setFields sets the fields of m on ev.
func setFields(ev *stage.Event, m map[string]any) {
	for k, v := range m {
		ev.Set(k, v)
	}
}

// fieldMap returns ev's fields as Go values (Value.Interface), nil when
// it has none.
func fieldMap(ev *stage.Event) map[string]any {
	var m map[string]any
	for name, v := range ev.Fields() {
		if m == nil {
			m = map[string]any{}
		}
		m[name] = v.Interface()
	}
	return m
}

func fieldErr(t *testing.T, err error, field, contains string) {
	t.Helper()
	var fe *stage.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *stage.FieldError", err)
	}
	if fe.Field != field || !strings.Contains(fe.Err.Error(), contains) {
		t.Fatalf("got FieldError{%q, %q}, want field %q containing %q", fe.Field, fe.Err, field, contains)
	}
}

func TestRegister(t *testing.T) {
	r := stage.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"process.json", "process.syslog", "process.filter", "process.route"} {
		k, ok := r.Lookup(name)
		if !ok {
			t.Fatalf("%s not registered", name)
		}
		if k.Doc == "" || k.NewHandler == nil {
			t.Errorf("%s: no doc or constructor", name)
		}
		for _, f := range k.Fields {
			if f.Doc == "" {
				t.Errorf("%s.%s: no doc", name, f.Name)
			}
		}
	}
	if _, ok := r.Lookup("process.func"); ok {
		t.Error("Register registered process.func")
	}
	if err := Register(r); err == nil {
		t.Error("registering twice succeeded")
	}
}

func routeObj(cond, next string) stage.Config {
	return stage.NewConfig(map[string]any{"if": cond, "next": next})
}
