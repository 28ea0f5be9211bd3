package netio_test

// This file tests a forced stop of netio.http and netio.tcp: waiting
// requests are answered 503, and records a sink abandoned count as busy.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

// A forced stop (Drain's deadline passed, then Close) answers every
// request still waiting for its records 503 with Retry-After, as Close
// promises: the records are left for the clients to resend, and a client
// that saw its connection cut instead would not know to (Go's http.Client
// does not retry a POST on EOF). Before, Close cut the connections right
// after ending the waits, and the handlers' 503s lost that race.
func TestHTTPForcedStopAnswersWaiting(t *testing.T) {
	const clients, perBody = 3, 2
	gate := make(chan struct{})
	var r *rig
	r, src := newHTTPRig(t, nil, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate // holds the records until the test is done
			return r.finish(ctx, b, out)
		})
	r.gate = gate // the rig's cleanup opens it
	url := "http://" + src.Addr().String() + "/"
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: wait}

	type result struct {
		status     int
		retryAfter string
		err        error
	}
	results := make(chan result, clients)
	for i := range clients {
		body := strings.Repeat(fmt.Sprintf("{\"client\":%d}\n", i), perBody)
		go func() {
			resp, err := c.Post(url, "application/x-ndjson", strings.NewReader(body))
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err == nil && !json.Valid(raw) {
				err = fmt.Errorf("body %q is not JSON", raw)
			}
			results <- result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), err: err}
		}()
	}
	poll.Until(t, "every record handed on", func() bool { return r.in.Stage().Stats().Out == clients*perBody })

	// The pipeline's forced stop: input stopped, a drain whose deadline
	// has passed, then Close.
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := src.Drain(ctx); err == nil {
		t.Fatal("Drain with its records held returned no error")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	for range clients {
		res := <-results
		if res.err != nil || res.status != http.StatusServiceUnavailable || res.retryAfter == "" {
			t.Errorf("a client waiting at the forced stop got %d (Retry-After %q), error %v; want 503 with Retry-After",
				res.status, res.retryAfter, res.err)
		}
	}
}

// holdOnCtx is a sink handler that holds its batch until its ctx ends, as
// a database write does, and then returns ctx's error; held is closed
// once it holds one.
func holdOnCtx(held chan struct{}) stage.HandlerFunc {
	return func(ctx context.Context, _ []*stage.Event, _ stage.Emitter) error {
		close(held)
		<-ctx.Done()
		return fmt.Errorf("write: %w", ctx.Err())
	}
}

// forceStop stops src the way the pipeline's forced stop does, up to the
// sink's abort: input stopped, a drain whose deadline has passed, then
// phase two cancelling the sink's handler.
func forceStop(t *testing.T, r *rig, src stage.Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := src.Drain(ctx); err == nil {
		t.Fatal("Drain with its records held returned no error")
	}
	r.sink.Abort()
}

// A forced stop whose abort ends a sink's Handle that honours ctx fails
// its records busy, not `stage "sink": write: context canceled`: they are
// left for the client to resend, and the client is told so in the word it
// retries on. The HTTP client gets 503 with Retry-After.
func TestHTTPForcedStopAbortedSinkIsBusy(t *testing.T) {
	held := make(chan struct{})
	r, src := newHTTPRig(t, nil, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1}, holdOnCtx(held))
	c := &http.Client{Timeout: wait}
	got := make(chan answer, 1)
	go func() { got <- post(t, c, "http://"+src.Addr().String()+"/", []byte("{\"a\":1}\n"), nil) }()
	<-held
	forceStop(t, r, src)
	a := <-got
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" || a.nacks() != "1:busy" {
		t.Fatalf("got %d (Retry-After %q) nacked %q error %q; want 503 with Retry-After, record 1 busy",
			a.status, a.retryAfter, a.nacks(), a.Error)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}

// As TestHTTPForcedStopAbortedSinkIsBusy, for netio.tcp: `nack 1 busy`.
func TestTCPForcedStopAbortedSinkIsBusy(t *testing.T) {
	held := make(chan struct{})
	r := newRig(t, nil, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1}, holdOnCtx(held))
	c := r.dial(wire.Lines, nil)
	if _, err := c.Send([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	<-held
	forceStop(t, r, r.src)
	poll.Until(t, "record 1 answered", func() bool { return c.Acked() >= 1 })
	if n := c.Nacks(); len(n) != 1 || n[0] != (wire.Reply{Nack: true, N: 1, Reason: "busy"}) {
		t.Fatalf("nacks %v, want `nack 1 busy`", n)
	}
}

// A request whose body was read as StopInput came is answered 503 with
// Retry-After, none of its records taken, and its records are counted in
// nacks.busy, as those of a body admission control refuses are: they are
// known by then. They were counted nowhere.
func TestHTTPStoppedAfterBodyCountedBusy(t *testing.T) {
	src, err := newSource(netio.HTTPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	hs := src.(*netio.HTTPSource)
	netio.SetBodyRead(hs, func(*http.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := hs.StopInput(ctx); err != nil {
			t.Error(err)
		}
	})
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1}, nil)
	c := &http.Client{Timeout: wait}
	a := post(t, c, "http://"+hs.Addr().String()+"/", []byte("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"), nil)
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("a body read as the source stopped got %d (Retry-After %q), error %q; want 503 with Retry-After",
			a.status, a.retryAfter, a.Error)
	}
	if got := r.in.Stage().Stats().Source.Nacks; got != (stats.Nacks{Busy: 3}) {
		t.Errorf("nacks %+v, want its 3 records busy", got)
	}
	if got := r.payloads(); len(got) != 0 {
		t.Errorf("records of a body refused for the stop were taken: %q", got)
	}
}

// A forced stop that answers a request 503 before its records are
// finished counts those records in nacks.busy: the stop leaves them
// unfinished (queued ones are never finished), so no Complete counts
// them. One finished after the answer is not counted again, here as a
// sink that ignores its ctx finishes both busy once released. They were
// counted nowhere.
func TestHTTPForcedStopCountsUnfinishedBusy(t *testing.T) {
	gate := make(chan struct{})
	r, src := newHTTPRig(t, nil, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1},
		func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
			<-gate // ignores ctx: holds its record past the stop
			stage.DoneAll(b, stage.ErrBusy)
			return nil
		})
	r.gate = gate // the rig's cleanup opens it, should the test fail early
	c := &http.Client{Timeout: wait}
	got := make(chan answer, 1)
	go func() { got <- post(t, c, "http://"+src.Addr().String()+"/", []byte("{\"n\":1}\n{\"n\":2}\n"), nil) }()
	poll.Until(t, "both records handed on", func() bool { return r.in.Stage().Stats().Out == 2 })

	ctx, cancel := context.WithCancel(context.Background())
	if err := src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := src.Drain(ctx); err == nil {
		t.Fatal("Drain with its records held returned no error")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("got %d (Retry-After %q) error %q; want 503 with Retry-After", a.status, a.retryAfter, a.Error)
	}
	if n := r.in.Stage().Stats().Source.Nacks; n != (stats.Nacks{Busy: 2}) {
		t.Errorf("nacks %+v at the forced stop's 503, want its 2 unfinished records busy", n)
	}
	close(gate)
	poll.Until(t, "the records finished", func() bool { return r.in.Stage().InFlight() == 0 })
	if n := r.in.Stage().Stats().Source.Nacks; n != (stats.Nacks{Busy: 2}) {
		t.Errorf("nacks %+v once the records finished busy after the 503, want them counted once: busy 2", n)
	}
}
