package engine

// This file tests the Input adapter and the drain wait of a source.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// counted is an Input of n records; the first fails of its reads fail
// (an error that is not the end), and it records every ack.
type counted struct {
	n, fails  int
	read      int
	connected bool
	closed    atomic.Bool
	mu        sync.Mutex
	acks      map[string]error
}

func (c *counted) Connect(context.Context) error { c.connected = true; return nil }

func (c *counted) Read(ctx context.Context) ([]byte, func(error), error) {
	if c.fails > 0 {
		c.fails--
		return nil, nil, errors.New("not yet")
	}
	if c.read == c.n {
		return nil, nil, stage.ErrEndOfInput
	}
	c.read++
	rec := fmt.Sprintf("r%d", c.read)
	return []byte(rec), func(err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, dup := c.acks[rec]; dup {
			panic("acked twice: " + rec)
		}
		c.acks[rec] = err
	}, nil
}

func (c *counted) Close() error { c.closed.Store(true); return nil }

func (c *counted) acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// runInput runs in, an Input read by the runtime (its stage logging to
// log), to its end into a sink of one worker that finishes each batch with
// stage.DoneAll (handled, when set, counts the records), then stops,
// drains and closes it as the pipeline does. Both stages take batches of
// batch (0: the default). It returns the sink, and Drain's error.
func runInput(t *testing.T, in stage.Input, batch int, log *zap.Logger, handled *atomic.Int64) (*Stage, error) {
	t.Helper()
	sink, sl := NewHandlerStage(stage.Settings{Name: "sink", Workers: 1, Concurrency: 1, Batch: batch, Terminal: true},
		stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
			if handled != nil {
				handled.Add(int64(len(b)))
			}
			stage.DoneAll(b, nil)
			return nil
		}), nil)
	src, il := NewInputStage(stage.Settings{Name: "lines", Batch: batch}, in, log)
	il.Connect(sink, nil)
	ctx := context.Background()
	for _, l := range []Lifecycle{sl, il} {
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	<-src.Ended()
	if err := il.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	sl.CloseQueue()
	sl.Wait()
	dctx, cancel := context.WithTimeout(ctx, poll.Limit)
	defer cancel()
	err := il.Drain(dctx)
	il.Close()
	return sink, err
}

// A sink that finishes an Input's records with stage.DoneAll acks them
// all. The acks are funcs, which == cannot compare, and DoneAll compared
// the Completers of neighbouring events: it panicked at the second event
// of a batch, the first event's ack was never called, and Drain waited
// for it until its context ended.
func TestInputAcksWithDoneAll(t *testing.T) {
	const n = 10
	in := &counted{n: n, acks: map[string]error{}}
	sink, err := runInput(t, in, 64, nil, nil)
	if err != nil {
		t.Fatalf("drain: %v (acked %d of %d)", err, in.acked(), n)
	}
	if got := in.acked(); got != n {
		t.Fatalf("%d records acked, want %d", got, n)
	}
	if st := sink.Stats(); st.Panics != 0 {
		t.Fatalf("the sink panicked %d times", st.Panics)
	}
}

// An Input's records become events in order; a read error is logged and
// read again; at the end of input the stage says so (Ended); every
// record is acked, with the sink's verdict, before Drain returns; Close
// closes the input.
func TestInputRunsToTheEnd(t *testing.T) {
	const n = 5000
	in := &counted{n: n, fails: 2, acks: map[string]error{}}
	var seq atomic.Uint64
	sink, sl := NewHandlerStage(stage.Settings{Name: "sink", Workers: 1, Concurrency: 1, Terminal: true},
		stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
			for _, ev := range b {
				if ev.Seq != seq.Load()+1 || string(ev.Payload) != fmt.Sprintf("r%d", ev.Seq) {
					t.Errorf("event %d: %q after %d", ev.Seq, ev.Payload, seq.Load())
				}
				seq.Store(ev.Seq)
				var err error
				if ev.Seq%100 == 0 {
					err = stage.ErrInvalid
				}
				ev.Done(err)
			}
			return nil
		}), nil)
	src, il := NewInputStage(stage.Settings{Name: "lines"}, in, nil)
	il.Connect(sink, nil)
	ctx := context.Background()
	for _, l := range []Lifecycle{sl, il} {
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-src.Ended():
	case <-time.After(time.Minute):
		t.Fatal("the input never ended")
	}
	if err := il.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	sl.CloseQueue()
	sl.Wait()
	if err := il.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := in.acked(); got != n {
		t.Fatalf("%d records acked, want %d", got, n)
	}
	for rec, err := range in.acks {
		var i int
		fmt.Sscanf(rec, "r%d", &i)
		if (i%100 == 0) != errors.Is(err, stage.ErrInvalid) {
			t.Errorf("%s acked with %v", rec, err)
		}
	}
	if err := il.Close(); err != nil || !in.closed.Load() || !in.connected {
		t.Fatalf("close: %v, closed %v, connected %v", err, in.closed.Load(), in.connected)
	}
	if st := src.Stats(); st.In != n || st.InFlight != 0 {
		t.Errorf("source stats: in %d, in flight %d", st.In, st.InFlight)
	}
}

// WaitFinished returns when the last event made is finished, woken by
// its Done, and fails with ctx while one is not, saying how many.
func TestWaitFinished(t *testing.T) {
	src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
	a := src.NewEvent(nil, 1, stage.Origin{})
	b := src.NewEvent(nil, 2, stage.Origin{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	a.Done(nil)
	if err := src.WaitFinished(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with one event unfinished: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- src.WaitFinished(context.Background()) }()
	poll.Until(t, "WaitFinished to wait", func() bool { return src.h.Waiting() })
	b.Done(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// withErr is an Input of n records, of which the last comes with last
// (io.Reader style), and then, when last is not the end, ErrEndOfInput.
type withErr struct {
	counted
	last error
}

func (w *withErr) Read(ctx context.Context) ([]byte, func(error), error) {
	b, ack, err := w.counted.Read(ctx)
	if err == nil && w.read == w.n {
		return b, ack, w.last
	}
	return b, ack, err
}

// A record that Read returns with an error is emitted and acked, and then
// the error is acted on: with ErrEndOfInput the input ends, with another
// it is read again. The record used to be dropped, never acked.
func TestInputRecordWithError(t *testing.T) {
	for _, last := range []error{stage.ErrEndOfInput, errors.New("transient")} {
		const n = 3
		in := &withErr{counted: counted{n: n, acks: map[string]error{}}, last: last}
		var got atomic.Int64
		if _, err := runInput(t, in, 0, nil, &got); err != nil {
			t.Fatalf("last %v: drain: %v", last, err)
		}
		if got.Load() != n || in.acked() != n {
			t.Errorf("last %v: %d records handled and %d acked, want %d", last, got.Load(), in.acked(), n)
		}
	}
}

// ackOnly's Read returns an ack with no record, and an error, once; then
// the end of its input.
type ackOnly struct {
	done  bool
	acked chan error
}

func (a *ackOnly) Connect(context.Context) error { return nil }
func (a *ackOnly) Close() error                  { return nil }
func (a *ackOnly) Read(context.Context) ([]byte, func(error), error) {
	if a.done {
		return nil, nil, stage.ErrEndOfInput
	}
	a.done = true
	return nil, func(err error) { a.acked <- err }, errors.New("gone: postgres://u:s3cret@db/x")
}

// An ack Read returns with an error and no record is called, once, with
// the error: there is nothing to take, and an input that counts on its
// acks (to commit an offset) waited for it for ever. The read error is
// logged with its secrets redacted.
func TestInputAckWithoutRecord(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	in := &ackOnly{acked: make(chan error, 2)}
	if _, err := runInput(t, in, 0, zap.New(core), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-in.acked:
		if err == nil || len(in.acked) != 0 {
			t.Errorf("ack called with %v (and %d more times), want once with the read's error", err, len(in.acked))
		}
	default:
		t.Error("the ack of a read with no record was never called")
	}
	if logs.FilterMessage("read failed; reading again").Len() != 1 {
		t.Errorf("the read error was not logged: %v", logs.All())
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "s3cret") {
			t.Errorf("%q logged the password: %v", e.Message, e.ContextMap())
		}
	}
}
