package pipeline

// This file tests that a panic in a kind's Close, a source's Drain, a
// transport or a consumer's Figures becomes an error, redacted, and does
// not end the process.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// closePanicker hands events on and panics in Close.
type closePanicker struct{ stage.HandlerFunc }

func (closePanicker) Close() error { panic("close boom") }

// drainPanicker is a test.seq source whose Drain panics.
type drainPanicker struct{ *rtSource }

func (drainPanicker) Drain(context.Context) error { panic("drain boom") }

// A panic in a kind's Close or in a source's Drain is that stage's error,
// logged with its stack (the engine recovers it): the other stages are
// closed all the same, and the process goes on.
func TestStopSurvivesPanics(t *testing.T) {
	reg, hub := rtRegistry(t)
	if err := reg.Register(stage.Kind{Name: "t.closepanic", Doc: "panics in Close",
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return closePanicker{rtPass}, nil }}); err != nil {
		t.Fatal(err)
	}
	seq, _ := reg.Lookup("test.seq")
	if err := reg.Register(stage.Kind{Name: "t.drainpanic", Doc: "panics in Drain", Fields: seq.Fields,
		NewSource: func(cfg stage.Config, env stage.Env) (stage.Source, error) {
			src, err := seq.NewSource(cfg, env)
			if err != nil {
				return nil, err
			}
			return drainPanicker{src.(*rtSource)}, nil
		}}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.ErrorLevel)
	p, err := New(rtConfig(
		rtStage("src", "t.drainpanic", "x", stage.Settings{}, map[string]any{"count": 20}),
		rtStage("x", "t.closepanic", "sink", stage.Settings{}, nil),
		rtStage("sink", "test.finish", "", stage.Settings{}, nil),
	), Options{Registry: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	_, err = p.Stop(context.Background())
	for _, want := range []string{`stage "src": drain: Drain panic: drain boom`, `stage "x": close: Close panic: close boom`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Stop: %v, want %s", err, want)
		}
	}
	if !src.closed.Load() || hub.closed.Load() != 1 {
		t.Errorf("source closed %v, %d handlers closed; want every other stage closed", src.closed.Load(), hub.closed.Load())
	}
	steps := map[string]bool{}
	for _, e := range logs.FilterMessageSnippet(" panicked").All() {
		f := e.ContextMap()
		steps[f["stage"].(string)+" "+e.Message] = strings.Contains(f["stack"].(string), "guard_test.go")
	}
	if !steps["src Drain panicked"] || !steps["x Close panicked"] {
		t.Errorf("logged panics (with the panicking frame in the stack): %v, want src drain and x close", steps)
	}
}

// A panic in a transport's checks is reported where the loader would
// report their error, and in its Open or queue maker as an error of New,
// not as a crash.
func TestTransportPanics(t *testing.T) {
	for _, c := range []struct {
		name string
		tr   stage.Transport
		want string
	}{
		{"check section", stage.Transport{CheckSection: func(stage.Config) error { panic("section boom") }},
			`p.yaml:1:1: panicked: section boom`},
		{"check queue", stage.Transport{CheckQueue: func(stage.Config) error { panic("queue boom") }},
			`stage "b": panicked: queue boom`},
		{"open", stage.Transport{},
			`stage "b": transport boom: panicked: open boom`},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg, _ := rtRegistry(t)
			tr := c.tr
			tr.Name, tr.Doc, tr.QueueDoc = "boom", "a transport that panics", "a queue that panics"
			tr.Open = func(stage.Config, string, *zap.Logger) (func(stage.Config, stage.Env) (stage.Handler, stage.Source, error), error) {
				panic("open boom")
			}
			if err := reg.RegisterTransport(tr); err != nil {
				t.Fatal(err)
			}
			src := "name: t\nstages:\n  a: {kind: test.seq, next: b}\n  b: {kind: test.finish, queue: {transport: boom}}\n"
			cfg, err := Parse("p.yaml", []byte(src), reg, nil)
			if err == nil {
				_, err = New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %s", err, c.want)
			}
		})
	}
}

// A consumer's Figures that panics leaves its stage's /stats entry
// without the queue's figures instead of failing Stats.
func TestFiguresPanic(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	p := &Pipeline{name: "t", log: zap.New(core)}
	fill := p.guardFigures("s", func(st *stats.Stage) { st.In = 1; panic("figures boom") })
	var st stats.Stage
	fill(&st)
	fill(&st)
	if st.In != 1 || logs.FilterMessage("stage panicked").Len() != 1 {
		t.Fatalf("in %d, %d panics logged; want the figures made before the panic and one log", st.In, logs.FilterMessage("stage panicked").Len())
	}
}

// panicConnecter is a queue consumer whose early Connect panics with a
// URL that holds a password.
type panicConnecter struct{}

func (panicConnecter) Connect(context.Context) (func(), error) {
	panic("dial nats://queue:s3cret@nats.internal:4222: refused")
}

// A panic in a transport's code is redacted wherever it is said: in the
// "stage panicked" line, in the warning that the early connect failed,
// and in the error a caller prints.
func TestTransportPanicRedacted(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	_, l := engine.NewHandlerStage(stage.Settings{Name: "store"}, stage.HandlerFunc(rtPass), nil)
	p := &Pipeline{name: "t", log: zap.New(core), stages: []engine.Lifecycle{l}}
	release := p.connectEarly(context.Background(), behind{stage: 0, connect: panicConnecter{}})
	poll.Until(t, "the panic and the failed connect logged", func() bool {
		return logs.FilterMessage("connecting the queue early failed").Len() == 1
	})
	release()
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "s3cret") {
			t.Errorf("%s %q: %v: the password shows", e.Level, e.Message, e.ContextMap())
		}
	}
	if err := protect(func() error { panic("nats://queue:s3cret@h:4222") }); strings.Contains(err.Error(), "s3cret") {
		t.Errorf("protect's error %q shows the password", err)
	}
}
