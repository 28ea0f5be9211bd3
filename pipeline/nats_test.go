//go:build !nonats

package pipeline

// This file tests pipelines whose queues are on NATS (natsq): in one
// process and split across several, what /stats, /readyz and scale show
// of a queued stage, Run's end, and the load-time checks and warnings.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// natsYAML is a pipeline whose store stage's queue is a JetStream stream.
func natsYAML(url string, count int) string {
	return `name: split
nats: {url: "` + url + `"}
stages:
  src:
    kind: test.seq
    count: ` + strconv.Itoa(count) + `
    next: mid
  mid:
    kind: test.pass
    next: store
  store:
    kind: test.finish
    batch: 32
    queue: {transport: nats, stream: t_split, ack_wait: 5s}
`
}

// buildYAML builds the pipeline of the YAML src with reg's kinds, running
// stages (all when none); a test that fails half way still stops it,
// phase two at once.
func buildYAML(t *testing.T, reg *stage.Registry, src string, stages ...string) *Pipeline {
	t.Helper()
	cfg, err := Parse("split.yaml", []byte(src), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop(), Stages: stages})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = p.Stop(ctx)
	})
	return p
}

func natsNew(t *testing.T, src string, stages ...string) (*Pipeline, *rtHub) {
	t.Helper()
	reg, hub := rtRegistry(t)
	p := buildYAML(t, reg, src, stages...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p, hub
}

func TestNatsQueueInOneProcess(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 1000
	p, hub := natsNew(t, natsYAML(srv.URL(), n))
	src := hub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event acked", func() bool { return src.ok.Load() == n })
	poll.Until(t, "store.out", func() bool { return rtStageStats(t, p.Stats(), "store").Out == n })
	st := rtStageStats(t, p.Stats(), "store")
	if ns, ok := natsq.StatsOf(st); !ok || !ns.Consuming || !ns.Publishing || st.Queue.Transport != "nats" {
		t.Fatalf("store stats: %+v", st)
	}
	rtStop(t, p)
	if src.missing() != 0 || src.dups.Load() != 0 || src.failed.Load() != 0 {
		t.Fatalf("missing %d, dups %d, failed %d", src.missing(), src.dups.Load(), src.failed.Load())
	}
}

// In one process with a stage's queue on NATS, /stats shows the stage's
// entry and hides the stand-in that publishes to the stream; the
// stand-in's local queue, which holds the records waiting to be
// published and under overflow reject refuses them busy, must still show
// there, as it does in a split front's entry. The stage's entry showed
// the stream and the envelopes not yet PubAcked only: with NATS away and
// 500 records in the stand-in's queue its depth left them out, and its
// rejected read 0 while the source's records were refused busy.
func TestOneProcessQueueShowsTheStandInsBacklog(t *testing.T) {
	for _, overflow := range []string{"block", "reject"} {
		t.Run(overflow, func(t *testing.T) {
			srv := natstest.Start(t, natstest.Options{})
			reg, hub := rtRegistry(t)
			const n, capacity = 2000, 500
			p := buildYAML(t, reg, fmt.Sprintf(`name: onep
nats: {url: %q}
stages:
  src:
    kind: test.seq
    count: %d
    next: hold
  hold:
    kind: test.gate
    next: store
  store:
    kind: test.finish
    queue: {transport: nats, stream: t_onep_%s, ack_wait: 5s, capacity: %d, overflow: %s}
`, srv.URL(), n, overflow, capacity, overflow))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			// The stand-in is the stage named store that /stats does not show.
			var shownStore, standIn *engine.Stage
			for _, s := range p.shown {
				if s.st.Settings().Name == "store" {
					shownStore = s.st
				}
			}
			for i, s := range p.stages {
				if st := s.Stage(); st.Settings().Name == "store" && !p.isSource[i] && st != shownStore {
					standIn = st
				}
			}
			if shownStore == nil || standIn == nil {
				t.Fatal("no stand-in of store beside the stage")
			}
			src := hub.source(t, "src")
			src.waitEmitted(t)
			srv.Stop()
			close(hub.gate)
			// With the server away the stand-in's queue fills behind the
			// publisher's envelopes; under reject it then refuses records.
			var front stats.Stage
			poll.Until(t, "the stand-in's local queue full", func() bool {
				front = standIn.Stats()
				ns, _ := natsq.StatsOf(front)
				return ns.LocalDepth == capacity && ns.Unpublished > 0 && (overflow == "block" || src.failed.Load() > 0)
			})
			refused := src.failed.Load()
			st := rtStageStats(t, p.Stats(), "store")
			ns, _ := natsq.StatsOf(st)
			if ns.LocalDepth != capacity || st.Queue.Depth < capacity+int(ns.Unpublished) {
				t.Errorf("/stats store: depth %d, local_depth %d, unpublished %d; want the %d records of the stand-in's local queue in both",
					st.Queue.Depth, ns.LocalDepth, ns.Unpublished, capacity)
			}
			if st.Queue.Capacity < capacity {
				t.Errorf("/stats store: capacity %d, want at least the stand-in's local queue's %d", st.Queue.Capacity, capacity)
			}
			switch overflow {
			case "block":
				if st.Rejected != 0 || refused != 0 {
					t.Errorf("under block: rejected %d, %d records refused; want none", st.Rejected, refused)
				}
			case "reject":
				if st.Rejected < front.Rejected || st.Rejected < uint64(refused) {
					t.Errorf("/stats store: rejected %d; the stand-in refused %d and the source was told busy for %d",
						st.Rejected, front.Rejected, refused)
				}
			}
			srv.Restart()
			rtStop(t, p)
		})
	}
}

// In one process with a stage's queue on NATS, the hidden stand-in's
// health is part of the one entry /stats shows: while the stream takes
// none of the stand-in's publishes (its subjects moved by an operator,
// the connection up, so the consumer sees nothing wrong), the stand-in is
// down and /readyz names the queue, and the stage's entry read ok. It
// reads the stand-in's state and reason, and ok again once the stream
// takes the records.
func TestOneProcessQueueShowsTheStandInsHealth(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	reg, hub := rtRegistry(t)
	const n = 200
	p := buildYAML(t, reg, fmt.Sprintf(`name: onep
nats: {url: %q}
stages:
  src:
    kind: test.seq
    count: %d
    next: hold
  hold:
    kind: test.gate
    next: store
  store:
    kind: test.finish
    queue: {transport: nats, stream: t_onep_health, ack_wait: 5s}
`, srv.URL(), n))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var shownStore, standIn *engine.Stage
	for _, s := range p.shown {
		if s.st.Settings().Name == "store" {
			shownStore = s.st
		}
	}
	for i, s := range p.stages {
		if st := s.Stage(); st.Settings().Name == "store" && !p.isSource[i] && st != shownStore {
			standIn = st
		}
	}
	if shownStore == nil || standIn == nil {
		t.Fatal("no stand-in of store beside the stage")
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)

	// The stream stops taking the queue's subjects: every publish finds
	// no responder, and the stand-in goes down.
	js := natstest.JetStream(t, srv.URL())
	str, err := js.Stream(context.Background(), "t_onep_health")
	if err != nil {
		t.Fatal(err)
	}
	orig := str.CachedInfo().Config
	moved := orig
	moved.Subjects = []string{"t_onep_health_elsewhere"}
	if _, err := js.UpdateStream(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	close(hub.gate)
	var front stats.Health
	poll.Until(t, "the stand-in down", func() bool {
		front = standIn.Stats().Health
		return front.State == stats.HealthDown
	})
	st := rtStageStats(t, p.Stats(), "store")
	if st.Health.State != stats.HealthDown || st.Health.Error != front.Error || !st.Health.Since.Equal(front.Since) {
		t.Errorf("/stats store health %s since %s (%q), want the stand-in's: %s since %s (%q)",
			st.Health.State, st.Health.Since, st.Health.Error, front.State, front.Since, front.Error)
	}
	if st.Health.Failures < front.Failures {
		t.Errorf("/stats store failures %d, want at least the stand-in's %d", st.Health.Failures, front.Failures)
	}
	// /readyz is as before: the stand-in down, the records cannot reach
	// the stream, and the process is not ready.
	if why := p.notReady(); !strings.Contains(why, "the queue of stage store down since") {
		t.Errorf("not ready: %q, want the store's queue named", why)
	}

	// The stream takes the subjects again: the records reach it and the
	// store, and the entry reads ok once the stand-in does.
	if _, err := js.UpdateStream(context.Background(), orig); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "every event acked", func() bool { return src.ok.Load() == n })
	poll.Until(t, "the store's entry ok", func() bool {
		return rtStageStats(t, p.Stats(), "store").Health.State == stats.HealthOK
	})
	if h := standIn.Stats().Health; h.State != stats.HealthOK {
		t.Errorf("stand-in %s (%q) while the entry reads ok", h.State, h.Error)
	} else if e := rtStageStats(t, p.Stats(), "store").Health; e.Since.Before(h.Since) {
		// Both ok: the entry is ok since the later of the two, the
		// stand-in's recovery, not since the process started.
		t.Errorf("entry reads ok since %s, the stand-in (down until moments ago) ok only since %s", e.Since, h.Since)
	}
	if why := p.notReady(); why != "" {
		t.Errorf("not ready once the stream takes the records: %q", why)
	}
	rtStop(t, p)
}

func TestNatsSplitAcrossPipelines(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 2000
	yaml := natsYAML(srv.URL(), n)
	front, hub := natsNew(t, yaml, "src", "mid")
	src := hub.source(t, "src")
	src.waitEmitted(t)
	// Acked once in the stream, before any process consumes it.
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	fs := front.Stats()
	if len(fs.Stages) != 3 {
		t.Fatalf("front stats list %d stages, want src, mid and the remote store", len(fs.Stages))
	}
	store := rtStageStats(t, fs, "store")
	if ns, ok := natsq.StatsOf(store); !store.Remote || !ok || ns.Published != n || store.Out != n {
		t.Fatalf("front's store: %+v", store)
	}
	poll.Until(t, "the stream's depth", func() bool {
		return rtStageStats(t, front.Stats(), "store").Queue.Depth == n
	})
	rtStop(t, front)

	// Two backs share the stream.
	b1, _ := natsNew(t, yaml, "store")
	b2, _ := natsNew(t, yaml, "store")
	poll.Until(t, "the backs to store every event", func() bool {
		return rtStageStats(t, b1.Stats(), "store").Out+rtStageStats(t, b2.Stats(), "store").Out == n
	})
	rtStop(t, b1)
	rtStop(t, b2)
	if len(b1.Stats().Stages) != 1 {
		t.Fatalf("a back lists %d stages, want store only", len(b1.Stats().Stages))
	}
}

func TestPartialRunErrors(t *testing.T) {
	reg, _ := rtRegistry(t)
	src := `name: t
stages:
  src:
    kind: test.seq
    next: mid
  mid:
    kind: test.pass
    next: store
  store:
    kind: test.finish
`
	cfg, err := Parse("p.yaml", []byte(src), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stages []string
		want   string
	}{
		{[]string{"src", "mid"}, `p.yaml:8:11: stage "mid": the route to "store" crosses processes ("mid" runs here, "store" does not)`},
		{[]string{"store"}, `p.yaml:8:11: stage "mid": the route to "store" crosses processes ("store" runs here, "mid" does not)`},
		{[]string{"src", "stor"}, `p.yaml: --stages: no stage named "stor" (did you mean "store"?)`},
	} {
		_, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop(), Stages: tc.stages})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("stages %v: got %v, want %q", tc.stages, err, tc.want)
		}
	}
}

func TestNatsQueueLoadErrors(t *testing.T) {
	reg, _ := rtRegistry(t)
	const head = "name: t\nstages:\n  src: {kind: test.seq, next: store}\n"
	for _, tc := range []struct{ src, want string }{
		{"  store: {kind: test.finish, queue: {stream: x}}\n", `4:46: stage "store": queue.stream applies to a queue on nats only`},
		{"  store: {kind: test.finish, queue: {transport: nats}}\n", `4:37: stage "store": queue.stream: a nats queue needs a stream name`},
		{"  store: {kind: test.finish, queue: {transport: nats, stream: a.b}}\n", `4:63: stage "store": queue.stream: stream name "a.b"`},
		{"  store: {kind: test.finish, queue: {transport: natz, stream: a}}\n", `4:49: stage "store": queue.transport: want local or nats, got "natz"`},
		{"  store: {kind: test.finish, queue: {transport: nats, stream: a, max_deliver: 0}}\n", `4:79: stage "store": queue.max_deliver`},
		// JetStream refuses a dedup window longer than the stream's max age;
		// run met that as "create stream ... failed", naming no key.
		{"  store: {kind: test.finish, queue: {transport: nats, stream: a, max_age: 30s}}\n", `stage "store": queue.max_age: max_age 30s is shorter than duplicates (2m0s)`},
		{"  store: {kind: test.finish, queue: {transport: nats, stream: a, dead_max_age: 30s}}\n", `stage "store": queue.dead_max_age: dead_max_age 30s is shorter than duplicates (2m0s)`},
	} {
		_, err := Parse("p.yaml", []byte(head+tc.src), reg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

// TestNatsTwoStagesOnOneStream: two stages whose queues name the same
// stream would share one work-queue stream: a stand-in of either
// publishes to the subjects both consumers read, so records went to the
// wrong stage, or round one stage again and again. New refuses the file,
// naming both stages, at the second one's queue.stream, in every process
// of it (lint and run alike), whichever stages run there.
func TestNatsTwoStagesOnOneStream(t *testing.T) {
	reg, _ := rtRegistry(t)
	src := `name: split
nats: {url: "nats://127.0.0.1:1"}
stages:
  src:
    kind: test.seq
    count: 10
    next: a
  a:
    kind: test.pass
    next: b
    queue: {transport: nats, stream: t_same}
  b:
    kind: test.finish
    queue: {transport: nats, stream: t_same}
`
	cfg, err := Parse("same.yaml", []byte(src), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const want = `same.yaml:14:38: stage "b": transport nats: queue.stream: stream t_same is already the queue of stage "a"`
	for _, stages := range [][]string{nil, {"src", "a"}, {"b"}, {"src"}} {
		p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop(), Stages: stages})
		if err == nil {
			_, _ = p.Stop(context.Background())
			t.Errorf("stages %v: New accepted stages a and b on one stream", stages)
			continue
		}
		if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("stages %v: got %v, want %q", stages, err, want)
		}
	}
	// A stage's stream cannot be another's dead-letter stream (STREAM_dead):
	// names ending in _dead are refused as the file is read.
	dead := strings.Replace(src, "test.finish\n    queue: {transport: nats, stream: t_same}", "test.finish\n    queue: {transport: nats, stream: t_same_dead}", 1)
	if _, err := Parse("dead.yaml", []byte(dead), reg, nil); err == nil || !strings.Contains(err.Error(), "dead.yaml:14:38:") || !strings.Contains(err.Error(), "_dead are the dead-letter streams") {
		t.Errorf("a stage on stream t_same_dead beside one on t_same: got %v, want refused at 14:38", err)
	}
}

// A back whose drain is cut short reports the events of the stream it
// held as redelivered later, not abandoned: those its stage failed were
// NAKed, those left unfinished were not acked, and JetStream delivers
// them all again, as a second back shows by storing every one.
func TestNatsBackCutShortReportsRedelivered(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 200
	// ack_wait is short: what the first back left unacked comes again soon.
	yaml := strings.Replace(natsYAML(srv.URL(), n), "ack_wait: 5s", "ack_wait: 2s", 1)
	front, hub := natsNew(t, yaml, "src", "mid")
	src := hub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	rtStop(t, front)

	// The back's store holds its batches until its context ends.
	stuck := strings.Replace(yaml, "kind: test.finish", "kind: test.block", 1)
	back, _ := natsNew(t, stuck, "store")
	poll.Until(t, "the back to take every event", func() bool {
		ns, ok := natsq.StatsOf(rtStageStats(t, back.Stats(), "store"))
		return ok && ns.Taken >= n
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the drain deadline has passed: phase two at once
	rep, err := back.Stop(ctx)
	// Every event the back held is to be redelivered: none stored, lost
	// or left to a client. (How many it held is not fixed: an event its
	// stage refused before the stop was NAKed and may be out again.)
	// Each is an event it took, counted once.
	f := rep.Fates
	ns, _ := natsq.StatsOf(rtStageStats(t, back.Stats(), "store"))
	if f.Redelivered == 0 || f.Redelivered > ns.Taken || f.Total() != f.Redelivered {
		t.Errorf("fates %+v, want only redelivered, at most the %d taken", f, ns.Taken)
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("0 stored, %d redelivered later (NATS), 0 lost (ack: none), 0 left", f.Redelivered)) {
		t.Errorf("Stop error %v, want it to say the events are redelivered", err)
	}

	again, _ := natsNew(t, yaml, "store")
	poll.Until(t, "a second back to store every event again", func() bool {
		return rtStageStats(t, again.Stats(), "store").Out >= n
	})
	rtStop(t, again)
}

// TestNatsBackWaitsPastMemoryLimit: a back past its memory_limit stops
// taking envelopes, under overflow reject too, so that it holds the limit
// and one envelope's events at most; the rest wait in the stream and are
// all stored once the stage moves again, none refused.
func TestNatsBackWaitsPastMemoryLimit(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const (
		n       = 400
		size    = 16 << 10
		perEnv  = 4
		limit   = 1 << 20
		envSize = perEnv * size
	)
	yaml := `name: split
nats: {url: "` + srv.URL() + `"}
memory_limit: 1MiB
stages:
  src:
    kind: test.seq
    count: ` + strconv.Itoa(n) + `
    size: ` + strconv.Itoa(size) + `
    next: store
  store:
    kind: test.gate
    batch: 8
    queue: {transport: nats, stream: t_mem, ack_wait: 5s, envelope_events: ` + strconv.Itoa(perEnv) + `}
    next: end
  end:
    kind: test.finish
`
	front, fhub := natsNew(t, yaml, "src")
	src := fhub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event in the stream", func() bool { return src.ok.Load() == n })
	rtStop(t, front)

	back, bhub := natsNew(t, yaml, "store", "end")
	poll.Until(t, "the back waiting past its memory limit", func() bool { return back.Stats().Memory.Waits > 0 })
	if m := back.Stats().Memory; m.HeldBytes > limit+envSize || m.LimitBytes != limit || m.Overflow != "reject" {
		t.Errorf("the back's memory: %+v; want at most %d bytes held (the limit and one envelope)", *m, limit+envSize)
	}
	close(bhub.gate)
	poll.Until(t, "the back to store every event", func() bool { return rtStageStats(t, back.Stats(), "end").Out == n })
	if m := back.Stats().Memory; m.Refused != 0 {
		t.Errorf("the back refused %d records past its memory limit, want none (they wait in the stream)", m.Refused)
	}
	rtStop(t, back)
}

// countInput is a finite input: n records, then the end of its input;
// ok and failed count how they ended.
type countInput struct {
	n, next    int
	ok, failed *atomic.Int64
}

func (c *countInput) Connect(context.Context) error { return nil }

func (c *countInput) Read(context.Context) ([]byte, func(error), error) {
	if c.next == c.n {
		return nil, nil, stage.ErrEndOfInput
	}
	c.next++
	return []byte(strconv.Itoa(c.next)), func(err error) {
		if err != nil {
			c.failed.Add(1)
		} else {
			c.ok.Add(1)
		}
	}, nil
}

func (c *countInput) Close() error { return nil }

// registerCount registers test.count, a countInput of n records, and
// returns its counts of records acked and failed.
func registerCount(t *testing.T, reg *stage.Registry, n int) (ok, failed *atomic.Int64) {
	t.Helper()
	ok, failed = new(atomic.Int64), new(atomic.Int64)
	if err := reg.Register(stage.Kind{Name: "test.count", Doc: "n records, then the end",
		NewInput: func(stage.Config, stage.Env) (stage.Input, error) {
			return &countInput{n: n, ok: ok, failed: failed}, nil
		}}); err != nil {
		t.Fatal(err)
	}
	return ok, failed
}

// countYAML is natsYAML with test.count, n records, as its source.
func countYAML(url string, n int) string {
	src := strings.Replace(natsYAML(url, n), "kind: test.seq", "kind: test.count", 1)
	return strings.Replace(src, "    count: "+strconv.Itoa(n)+"\n", "", 1)
}

// TestRunEndsOnceTheQueueEmpties: a finite source feeding, through a
// queue on NATS, a stage in the same process: Run returns once every
// event has come through the queue and been finished, nothing left in
// the stream. Before, the queue's consumer counted as a source that never
// ended its input, and Run never returned.
func TestRunEndsOnceTheQueueEmpties(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 3000
	reg, _ := rtRegistry(t)
	ok, failed := registerCount(t, reg, n)
	p := buildYAML(t, reg, countYAML(srv.URL(), n))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only when its context ended")
	}
	if ok.Load() != n || failed.Load() != 0 {
		t.Fatalf("acked %d of %d, failed %d", ok.Load(), n, failed.Load())
	}
	if out := rtStageStats(t, p.Stats(), "store").Out; out != n {
		t.Fatalf("store.out %d, want %d: the run ended before the queue was empty", out, n)
	}
	js := natstest.JetStream(t, srv.URL())
	cons, err := js.Consumer(ctx, "t_split", "store")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("the stream still holds %d pending and %d unacked", info.NumPending, info.NumAckPending)
	}
}

// TestRunReturnsWhenStoppedWaitingForTheQueue: Run, waiting for a queue
// to empty whose stage has not started (a database down), returns once
// Stop is called; it polled until its context ended.
func TestRunReturnsWhenStoppedWaitingForTheQueue(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 100
	reg, _ := rtRegistry(t)
	ok, _ := registerCount(t, reg, n)
	l := newLateSink(nil)
	registerLate(t, reg, l)
	p := buildYAML(t, reg, strings.Replace(countYAML(srv.URL(), n), "kind: test.finish", "kind: test.late", 1))
	ran := make(chan error, 1)
	go func() { ran <- p.Run(context.Background()) }()
	<-l.starting
	poll.Until(t, "every record acked into the queue", func() bool { return ok.Load() == n })
	if _, err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// gatedNatsYAML is a pipeline of n events whose store, one worker of
// batch events held by hub.gate (test.gate), has its queue (the YAML
// flow mapping's contents) on the NATS server at url.
func gatedNatsYAML(url string, n, batch int, queue string) string {
	return fmt.Sprintf(`name: split
nats: {url: %q}
stages:
  src:
    kind: test.seq
    count: %d
    next: store
  store:
    kind: test.gate
    batch: %d
    workers: 1
    concurrency: 1
    queue: {%s}
    next: end
  end:
    kind: test.finish
`, url, n, batch, queue)
}

// queue.overflow: reject on a nats queue is the stream's: the front
// refuses what the stream cannot take. The local queue the back's
// consumer fills only waits for room: refusing there NAKed envelopes
// whenever the stage fell behind and, at their max_deliver-th delivery,
// dead-lettered records the front had acked (a review: 1020 of 1588).
func TestNatsBacklogUnderRejectIsNoFailure(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 400
	yaml := gatedNatsYAML(srv.URL(), n, 8, "transport: nats, stream: t_reject, overflow: reject, capacity: 16, envelope_events: 8, max_deliver: 2, backoff: 10ms, max_backoff: 10ms")
	// The front's own queue (the stand-in's) is large enough to refuse
	// nothing; the back's holds 16.
	front, hub := natsNew(t, strings.Replace(yaml, "capacity: 16", "capacity: 1024", 1), "src")
	src := hub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	rtStop(t, front)

	reg, backHub := rtRegistry(t)
	back := buildYAML(t, reg, yaml, "store", "end")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := back.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The gate holds the store's one worker: its queue fills, and the
	// consumer has envelopes it cannot post.
	poll.Until(t, "the store's local queue full", func() bool {
		ns, _ := natsq.StatsOf(rtStageStats(t, back.Stats(), "store"))
		return ns.LocalDepth >= 16
	})
	// A bound on how long to look, not a timing: while the queue is
	// full, nothing is NAKed however long one waits.
	look := time.NewTicker(10 * time.Millisecond)
	defer look.Stop()
	for end := time.Now().Add(time.Second); time.Now().Before(end); <-look.C {
		if ns, _ := natsq.StatsOf(rtStageStats(t, back.Stats(), "store")); ns.Naked > 0 || ns.DeadLettered > 0 {
			t.Fatalf("with the store's queue full, %d events NAKed and %d dead-lettered; want them waiting for room", ns.Naked, ns.DeadLettered)
		}
	}
	close(backHub.gate)
	poll.Until(t, "every event through the back", func() bool { return rtStageStats(t, back.Stats(), "end").Out == n })
	ns, _ := natsq.StatsOf(rtStageStats(t, back.Stats(), "store"))
	if ns.Naked > 0 || ns.DeadLettered > 0 {
		t.Fatalf("%d events NAKed and %d dead-lettered; want none", ns.Naked, ns.DeadLettered)
	}
	rtStop(t, back)
}

// A pipeline whose front and back share a process drains with its stream
// full: the consumer keeps taking envelopes until the stand-in that
// publishes to the stream has drained. Stopped first, as every source
// was, it left the stand-in nowhere to publish, and the drain waited
// until its deadline and was forced though the store was healthy.
func TestNatsOneProcessDrainsAFullStream(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 200
	yaml := gatedNatsYAML(srv.URL(), n, 1, "transport: nats, stream: t_full, max_msgs: 2, envelope_events: 4, capacity: 4")
	p, hub := natsNew(t, yaml)
	src := hub.source(t, "src")
	// The gate holds the store: the stream fills, and the stand-in
	// retries what it cannot publish. (The consumer starts in the
	// background: it has taken envelopes, so the stop finds it running.)
	poll.Until(t, "the stream full, the stand-in retrying, the consumer taking", func() bool {
		ns, _ := natsq.StatsOf(rtStageStats(t, p.Stats(), "store"))
		return ns.StreamMsgs >= 2 && ns.PublishRetries > 0 && ns.Consuming && ns.Taken > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		rep StopReport
		err error
	}
	stopped := make(chan result, 1)
	go func() {
		rep, err := p.Stop(ctx)
		stopped <- result{rep, err}
	}()
	rtWaitState(t, p, "draining")
	close(hub.gate) // the store is healthy again
	r := <-stopped
	if r.err != nil || r.rep.Forced || r.rep.Abandoned != 0 {
		t.Fatalf("Stop: %+v, %v; want a complete drain", r.rep, r.err)
	}
	t.Logf("drain: %+v; %d acked, %d failed", r.rep, src.ok.Load(), src.failed.Load())
	if src.failed.Load() != 0 {
		t.Fatalf("%d events failed; want every one taken stored", src.failed.Load())
	}
}

// Scale resizes the stage /stats shows under the name: where the stage
// runs behind a nats queue, its own pool, not the stand-in that publishes
// to the stream (in one process) or the consumer that feeds it (on a
// back), which share its name. Where only the stand-in runs (a front),
// it says that the stage runs in another process.
func TestNatsScaleTakesTheShownStage(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 10
	yaml := natsYAML(srv.URL(), n)
	check := func(what string, p *Pipeline) {
		t.Helper()
		// Stored events: the stage behind the queue has started.
		poll.Until(t, what+": store.out", func() bool { return rtStageStats(t, p.Stats(), "store").Out == n })
		st, err := p.Scale("store", Scale{Workers: Pin(6), Batch: Pin(7)})
		if err != nil {
			t.Errorf("%s: scale: %v", what, err)
			return
		}
		shown := rtStageStats(t, p.Stats(), "store")
		for _, s := range []struct {
			name string
			st   stats.Stage
		}{{"answer", st}, {"/stats", shown}} {
			if s.st.Pool.Workers != 6 || s.st.Control.Workers.Auto || s.st.Control.Batch.Now != 7 || s.st.Control.Batch.Auto {
				t.Errorf("%s: %s: pool %+v, workers %+v, batch %+v; want 6 workers and batch 7, pinned", what, s.name, s.st.Pool, s.st.Control.Workers, s.st.Control.Batch)
			}
		}
	}

	front, hub := natsNew(t, yaml, "src", "mid")
	src := hub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	_, err := front.Scale("store", Scale{Workers: Pin(6)})
	if !errors.Is(err, ErrRemoteStage) || !strings.Contains(err.Error(), `stage "store": runs in another process`) {
		t.Errorf("front: scale store: %v, want that it runs in another process", err)
	}
	rtStop(t, front)

	back, _ := natsNew(t, yaml, "store")
	check("back", back)
	_, err = back.Scale("mid", Scale{Workers: Pin(2)})
	if !errors.Is(err, ErrRemoteStage) {
		t.Errorf("back: scale mid (run by the front): %v, want that it runs in another process", err)
	}
	if _, err = back.Scale("nope", Scale{Workers: Pin(2)}); !errors.Is(err, ErrUnknownStage) {
		t.Errorf("back: scale nope: %v, want no such stage", err)
	}
	rtStop(t, back)

	one, _ := natsNew(t, yaml)
	check("one process", one)
	rtStop(t, one)
}

// With the queue of a stage on NATS in one process, the stage down (its
// database away) leaves the process ready: its records wait in the
// stream, which is what the queue is for, and the front keeps acking them.
// /stats still shows it down. The queue itself down (the stand-in cannot
// publish: the NATS server is away) makes the process unready.
func TestNatsReadyWhileQueuedStageDown(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	reg, hub := rtRegistry(t)
	db := make(chan struct{}) // closed: the database is back
	if err := reg.Register(stage.Kind{Name: "test.outage", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
				for {
					select {
					case <-db:
						stage.ReportAttempt(ctx, nil)
						stage.DoneAll(b, nil)
						return nil
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(5 * time.Millisecond): // the retry's backoff
					}
					stage.ReportAttempt(ctx, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"))
				}
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	p := buildYAML(t, reg, fmt.Sprintf(`name: ready
nats: {url: %q}
stages:
  src:
    kind: test.seq
    count: %d
    next: hold
  hold:
    kind: test.gate
    next: store
  store:
    kind: test.outage
    workers: 1
    queue: {transport: nats, stream: t_ready, ack_wait: 5s}
`, srv.URL(), n))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)

	// The records held before the queue, the server goes away: the
	// stand-in's publishes fail, and the process is not ready.
	srv.Stop()
	close(hub.gate)
	var why string
	poll.Until(t, "not ready while the queue is away", func() bool { why = p.notReady(); return why != "" })
	if !strings.Contains(why, "the queue of stage store down since") {
		t.Errorf("not ready: %q, want the store's queue named", why)
	}

	// The server back, the records reach the stream and are acked; the
	// store, retrying its database, is down but the process is ready.
	srv.Restart()
	poll.Until(t, "every event acked", func() bool { return src.ok.Load() == n })
	poll.Until(t, "the store down", func() bool {
		return rtStageStats(t, p.Stats(), "store").Health.State == stats.HealthDown
	})
	poll.Until(t, "the queue up again", func() bool { why = p.notReady(); return why == "" })
	if st := rtStageStats(t, p.Stats(), "store"); st.Health.State != stats.HealthDown {
		t.Errorf("store health %q while ready, want it still down", st.Health.State)
	}
	close(db)
	poll.Until(t, "the store up", func() bool {
		return rtStageStats(t, p.Stats(), "store").Health.State != stats.HealthDown
	})
	if why = p.notReady(); why != "" {
		t.Errorf("not ready once the database is back: %q", why)
	}
	rtStop(t, p)
}

// startHandler is a store whose Start waits until up is closed (its
// database away at start), then finishes every event.
type startHandler struct{ up chan struct{} }

func (h startHandler) Start(ctx context.Context) error {
	select {
	case <-h.up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h startHandler) Handle(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
	stage.DoneAll(b, nil)
	return nil
}

// A back whose stage is still starting (its database away) connects to
// NATS and shows the stream's backlog as the stage's depth, taking
// nothing: it showed its local queue, empty, and connected:false, as its
// consumer connected only once the stage had started.
func TestNatsBackShowsBacklogWhileStarting(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 300
	yaml := strings.Replace(natsYAML(srv.URL(), n), "kind: test.finish", "kind: test.slowstart", 1)
	reg, hub := rtRegistry(t)
	up := make(chan struct{})
	if err := reg.Register(stage.Kind{Name: "test.slowstart", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return startHandler{up: up}, nil }}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	front := buildYAML(t, reg, yaml, "src", "mid")
	if err := front.Start(ctx); err != nil {
		t.Fatal(err)
	}
	src := hub.source(t, "src")
	src.waitEmitted(t)
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	rtStop(t, front)

	back := buildYAML(t, reg, yaml, "store")
	if err := back.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var st stats.Stage
	var ns natsq.Stats
	poll.Until(t, "the backlog on the back", func() bool {
		st = rtStageStats(t, back.Stats(), "store")
		ns, _ = natsq.StatsOf(st)
		return st.Queue.Depth == n
	})
	if !ns.Connected || ns.Consuming || ns.Taken != 0 || st.In != 0 {
		t.Errorf("while the store starts: connected %v, consuming %v, taken %d, in %d; want connected, nothing taken", ns.Connected, ns.Consuming, ns.Taken, st.In)
	}
	// A second back stopped while its store starts gives its connection
	// back (goleak in TestMain sees a connection left open).
	other := buildYAML(t, reg, yaml, "store")
	if err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the second back connected", func() bool {
		ns, _ := natsq.StatsOf(rtStageStats(t, other.Stats(), "store"))
		return ns.Connected
	})
	rtStop(t, other)
	close(up)
	poll.Until(t, "the back to store every event", func() bool { return rtStageStats(t, back.Stats(), "store").Out == n })
	rtStop(t, back)
}

// The start's log line counts the stages as /stats lists them: a queue's
// stand-ins (its publisher and consumer) are the runtime's, not the
// user's, and the line said 5 for a file of 3.
func TestNatsStartLogCountsUserStages(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	reg, _ := rtRegistry(t)
	cfg, err := Parse("split.yaml", []byte(natsYAML(srv.URL(), 10)), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := New(cfg, Options{Registry: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = p.Stop(ctx) }()
	started := logs.FilterMessage("pipeline started").All()
	if len(started) != 1 || started[0].ContextMap()["stages"] != int64(len(p.Stats().Stages)) || len(p.Stats().Stages) != 3 {
		t.Fatalf("pipeline started: %v; /stats lists %d stages, the file 3", started, len(p.Stats().Stages))
	}
}

// A split front shows its stand-in of a stage degraded while no process
// consumes the stage's stream, before any back has started (its consumer
// does not exist), and ok once a back takes the records; /readyz stays
// ready, since the records are safe in the stream. Once the back has
// stopped, the server's figures the rule reads for a back that went away
// (natsq's unconsumed, whose wait is tested there) say so: envelopes
// pending and no pull request open.
func TestNatsFrontShowsNoBackConsumes(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	const n = 10
	yaml := natsYAML(srv.URL(), n)
	front, hub := natsNew(t, yaml, "src", "mid")
	src := hub.source(t, "src")
	poll.Until(t, "every event acked by the front", func() bool { return src.ok.Load() == n })
	var st stats.Stage
	poll.Until(t, "the front's store degraded", func() bool {
		st = rtStageStats(t, front.Stats(), "store")
		return st.Health.State == stats.HealthDegraded
	})
	if !strings.Contains(st.Health.Error, "no process consumes stream t_split: its consumer") {
		t.Errorf("front's store: %q, want that no process consumes its stream", st.Health.Error)
	}
	if why := front.notReady(); why != "" {
		t.Errorf("front not ready while no back runs: %q", why)
	}

	back, _ := natsNew(t, yaml, "store")
	poll.Until(t, "the back stores every record", func() bool { return rtStageStats(t, back.Stats(), "store").Out == n })
	poll.Until(t, "the front's store ok with a back pulling", func() bool {
		st = rtStageStats(t, front.Stats(), "store")
		ns, _ := natsq.StatsOf(st)
		return st.Health.State == stats.HealthOK && ns.PullsWaiting > 0 && !ns.LastActive.IsZero()
	})
	rtStop(t, back)
	rtStop(t, front)

	// A second front publishes while no back runs.
	front, hub = natsNew(t, yaml, "src", "mid")
	src = hub.source(t, "src")
	poll.Until(t, "every event acked by the second front", func() bool { return src.ok.Load() == n })
	poll.Until(t, "pending and no pull open", func() bool {
		ns, _ := natsq.StatsOf(rtStageStats(t, front.Stats(), "store"))
		return ns.Pending > 0 && ns.PullsWaiting == 0 && ns.AckPending == 0 && ns.ConsumerFound
	})
	rtStop(t, front)
}

// A stage whose queue is on a transport, and whose kind says handling an
// event twice does harm, gets a warning at its queue.transport: a crash
// makes the transport deliver again what the process did not finish.
// The same stage on a local queue, or configured so that it does no harm,
// gets none.
func TestWarnsOfRedeliveryHarm(t *testing.T) {
	reg, _ := rtRegistry(t)
	if err := reg.Register(stage.Kind{Name: "test.store", Terminal: true,
		Fields: []stage.Field{{Name: "key", Type: stage.String, Doc: "the key"}},
		Redelivered: func(cfg stage.Config) error {
			if cfg.String("key") == "" {
				return errors.New("with no key a record delivered again is stored twice")
			}
			return nil
		},
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(context.Context, []*stage.Event, stage.Emitter) error { return nil }), nil
		}}); err != nil {
		t.Fatal(err)
	}
	file := func(key, queue string) string {
		return `name: w
nats: {url: "nats://127.0.0.1:4222"}
stages:
  src:
    kind: test.seq
    next: store
  store:
    kind: test.store
    key: "` + key + `"
    queue: ` + queue + `
`
	}
	for _, tc := range []struct {
		key, queue, want string
	}{
		{"", "{transport: nats, stream: t_w}", `split.yaml:10:24: warning: stage "store": its queue on nats delivers again what a process did not finish (a crash), and with no key a record delivered again is stored twice`},
		{"id", "{transport: nats, stream: t_w}", ""},
		{"", "{capacity: 10}", ""},
	} {
		cfg, err := Parse("split.yaml", []byte(file(tc.key, tc.queue)), reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range cfg.Warnings(reg) {
			got = append(got, w.Error())
		}
		if want := []string{tc.want}; tc.want == "" && len(got) != 0 || tc.want != "" && !slices.Equal(got, want) {
			t.Errorf("key %q, queue %s: warnings %q, want %q", tc.key, tc.queue, got, tc.want)
		}
	}
}
