package engine

// This file tests that a panic in a kind's methods other than Handle
// (Start, Close, a Source's steps, an Input's Connect and Read) becomes
// the stage's error, as Handle's does, rather than ending the process.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// panicky panics in the methods named in at.
type panicky struct{ at string }

func (p panicky) maybe(m string) {
	if p.at == m {
		panic(m + " boom")
	}
}

func (p panicky) Handle(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
	stage.DoneAll(b, nil)
	return nil
}
func (p panicky) Start(context.Context) error { p.maybe("Start"); return nil }
func (p panicky) Close() error                { p.maybe("Close"); return nil }

// panickySource is a Source that panics in the step named in at.
type panickySource struct{ panicky }

func (p panickySource) Start(context.Context, stage.SourceRuntime) error {
	p.maybe("Start")
	return nil
}
func (p panickySource) StopInput(context.Context) error { p.maybe("StopInput"); return nil }
func (p panickySource) Drain(context.Context) error     { p.maybe("Drain"); return nil }

// checkPanic checks that err is the stage's error naming the panic, and
// that the stage counted it and logged it with a stack.
func checkPanic(t *testing.T, s *Stage, logs *observer.ObservedLogs, err error, m string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), m+" boom") {
		t.Fatalf("%s: error %v, want the panic's value", m, err)
	}
	if s.Stats().Panics != 1 {
		t.Errorf("%s: panics %d, want 1", m, s.Stats().Panics)
	}
	got := logs.FilterMessageSnippet("panicked").FilterField(zap.String("stage", s.Name())).All()
	if len(got) != 1 || !strings.Contains(fmt.Sprint(got[0].ContextMap()["stack"]), "panicky") {
		t.Errorf("%s: panic not logged once with the stage and a stack through the kind: %v", m, got)
	}
}

func TestHandlerPanicsOutsideHandleAreStageErrors(t *testing.T) {
	for _, m := range []string{"Start", "Close"} {
		core, logs := observer.New(zap.ErrorLevel)
		s, l := NewHandlerStage(stage.Settings{Name: "h", Workers: 1}, panicky{at: m}, zap.New(core))
		err := l.Start(context.Background())
		if m == "Start" {
			if err != nil && !strings.HasPrefix(err.Error(), `stage "h": start: `) {
				t.Errorf("start error %q does not name the stage and the step", err)
			}
			checkPanic(t, s, logs, err, m)
			l.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		l.CloseQueue()
		l.Wait()
		err = l.Close()
		if err != nil && !strings.HasPrefix(err.Error(), `stage "h": close: `) {
			t.Errorf("close error %q does not name the stage and the step", err)
		}
		checkPanic(t, s, logs, err, m)
	}
}

func TestSourcePanicsAreStageErrors(t *testing.T) {
	for _, m := range []string{"Start", "StopInput", "Drain", "Close"} {
		core, logs := observer.New(zap.ErrorLevel)
		s, l := NewSourceStage(stage.Settings{Name: "src"}, panickySource{panicky{at: m}}, zap.New(core))
		ctx := context.Background()
		var err error
		for _, step := range []struct {
			name string
			do   func() error
		}{
			{"Start", func() error { return l.Start(ctx) }},
			{"StopInput", func() error { return l.StopInput(ctx) }},
			{"Drain", func() error { return l.Drain(ctx) }},
			{"Close", l.Close},
		} {
			if e := step.do(); step.name == m {
				err = e
			} else if e != nil {
				t.Fatalf("%s: %v", step.name, e)
			}
		}
		checkPanic(t, s, logs, err, m)
	}
}

// panickyInput panics in Connect when told to, and in its first Read;
// then it reads n records.
type panickyInput struct {
	panicky
	n, read int
	mu      sync.Mutex
	acked   int
}

func (p *panickyInput) Connect(context.Context) error { p.maybe("Connect"); return nil }

func (p *panickyInput) Read(context.Context) ([]byte, func(error), error) {
	if p.read == 0 {
		p.read++
		p.maybe("Read")
	}
	if p.read > p.n {
		return nil, nil, stage.ErrEndOfInput
	}
	p.read++
	return []byte("x"), func(error) { p.mu.Lock(); p.acked++; p.mu.Unlock() }, nil
}

func (p *panickyInput) Close() error { return nil }

func (p *panickyInput) acks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// A panic in Connect fails the start; one in Read is a read error: the
// input is read again and its records go through.
func TestInputPanicsAreStageErrors(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	s, l := NewInputStage(stage.Settings{Name: "in"}, &panickyInput{panicky: panicky{at: "Connect"}}, zap.New(core))
	err := l.Start(context.Background())
	checkPanic(t, s, logs, err, "Connect")
	l.Close()

	core, logs = observer.New(zap.WarnLevel)
	const n = 3
	in := &panickyInput{panicky: panicky{at: "Read"}, n: n}
	s, l = NewInputStage(stage.Settings{Name: "in"}, in, zap.New(core))
	ctx := context.Background()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.Ended()
	if err := l.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "every record acked", func() bool { return in.acks() == n })
	var err2 error
	if w := logs.FilterMessageSnippet("read failed").All(); len(w) == 1 {
		err2 = fmt.Errorf("%v", w[0].ContextMap()["error"])
	}
	checkPanic(t, s, logs, err2, "Read")
}

// figuresPanicky is a handler whose Figures panics.
type figuresPanicky struct{ panicky }

func (figuresPanicky) Figures(*stats.Stage) { panic("Figures boom") }

// A panic in a kind's Figures, which /stats calls on the admin endpoint's
// goroutines every second, leaves the stage's figures out and is logged
// and counted once, however often /stats is read.
func TestFiguresPanicIsCaught(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	s, _ := NewHandlerStage(stage.Settings{Name: "figs"}, figuresPanicky{}, zap.New(core))
	for range 3 {
		_ = s.Stats()
	}
	if n := s.Stats().Panics; n != 1 {
		t.Errorf("panics %d, want 1", n)
	}
	if got := logs.FilterMessage("Figures panicked").Len(); got != 1 {
		t.Errorf("%d lines logged, want 1", got)
	}
}

// admFailSource starts admission control, then fails its Start.
type admFailSource struct{ panicky }

func (admFailSource) Start(_ context.Context, rt stage.SourceRuntime) error {
	rt.StartAdmission(100 * time.Millisecond)
	return errors.New("second listener: address in use")
}
func (admFailSource) StopInput(context.Context) error { return nil }
func (admFailSource) Drain(context.Context) error     { return nil }

// A source whose Start fails after it started admission control has the
// controller's goroutine stopped with it (the pipeline never closes a
// source that did not start).
func TestFailedSourceStartStopsAdmission(t *testing.T) {
	s, l := NewSourceStage(stage.Settings{Name: "src"}, admFailSource{}, nil)
	if err := l.Start(context.Background()); err == nil {
		t.Fatal("start did not fail")
	}
	a := s.adm.Load()
	if a == nil {
		t.Fatal("no admission controller")
	}
	select {
	case <-a.done:
	default:
		t.Fatal("the admission controller still runs after the failed Start")
	}
}
