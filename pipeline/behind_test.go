//go:build !nonats

package pipeline

// This file tests the background start of a stage behind a transport's
// queue: the sources run and their events are acked while it cannot start.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// lateSink is a terminal handler whose Start waits until release is
// closed (a database that is down), then returns fail.
type lateSink struct {
	starting chan struct{} // closed when Start is called
	release  chan struct{}
	fail     error
	ended    chan error // Start's ctx error, when ctx ended first
}

func newLateSink(fail error) *lateSink {
	return &lateSink{starting: make(chan struct{}), release: make(chan struct{}), fail: fail, ended: make(chan error, 1)}
}

func (l *lateSink) Start(ctx context.Context) error {
	close(l.starting)
	select {
	case <-l.release:
		return l.fail
	case <-ctx.Done():
		l.ended <- ctx.Err()
		return ctx.Err()
	}
}

func (l *lateSink) Handle(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
	stage.DoneAll(b, nil)
	return nil
}

// behindNew builds natsYAML's pipeline with its store of kind test.late,
// whose handler is l.
func behindNew(t *testing.T, url string, n int, l *lateSink) (*Pipeline, *rtHub) {
	t.Helper()
	reg, hub := rtRegistry(t)
	registerLate(t, reg, l)
	return buildYAML(t, reg, strings.Replace(natsYAML(url, n), "kind: test.finish", "kind: test.late", 1)), hub
}

// registerLate registers test.late, a terminal kind whose handler is l.
func registerLate(t *testing.T, reg *stage.Registry, l *lateSink) {
	t.Helper()
	if err := reg.Register(stage.Kind{Name: "test.late", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return l, nil }}); err != nil {
		t.Fatal(err)
	}
}

// TestStageStartsBehindItsQueue: Start returns while the stage behind the
// queue is still starting; every event is acked into the queue, whose
// depth shows them; once the stage starts it takes them all.
func TestStageStartsBehindItsQueue(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 1000
	l := newLateSink(nil)
	p, hub := behindNew(t, srv.URL(), n, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	<-l.starting
	src := hub.source(t, "src")
	poll.Until(t, "every event acked while the store starts", func() bool { return src.ok.Load() == n })
	poll.Until(t, "the queue's depth", func() bool { return rtStageStats(t, p.Stats(), "store").Queue.Depth == n })
	if st := rtStageStats(t, p.Stats(), "store"); st.Out != 0 {
		t.Fatalf("store.out %d before it started", st.Out)
	}
	close(l.release)
	poll.Until(t, "store.out", func() bool { return rtStageStats(t, p.Stats(), "store").Out == n })
	rtStop(t, p)
	if src.missing() != 0 || src.dups.Load() != 0 || src.failed.Load() != 0 {
		t.Fatalf("missing %d, dups %d, failed %d", src.missing(), src.dups.Load(), src.failed.Load())
	}
}

// TestStopEndsAStartBehindItsQueue: Stop ends the stage's Start in
// progress and drains the rest: the events wait in the stream.
func TestStopEndsAStartBehindItsQueue(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 100
	l := newLateSink(nil)
	p, hub := behindNew(t, srv.URL(), n, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	src := hub.source(t, "src")
	poll.Until(t, "every event acked", func() bool { return src.ok.Load() == n })
	rtStop(t, p)
	if err := <-l.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the store's Start ended with %v, want its context cancelled", err)
	}
}

// TestFailedStartBehindItsQueueStopsTheRun: a stage behind the queue that
// fails to start ends Run, which returns its error.
func TestFailedStartBehindItsQueueStopsTheRun(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	l := newLateSink(errors.New("no such table"))
	p, _ := behindNew(t, srv.URL(), 0, l)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	<-l.starting
	close(l.release)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no such table") || !strings.Contains(err.Error(), `"store"`) {
			t.Fatalf("Run: %v, want the store's start error", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after the store failed to start")
	}
}
