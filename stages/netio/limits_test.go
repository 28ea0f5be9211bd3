package netio_test

// This file tests netio.tcp's limits: reads paused at max_unacked,
// refusals nacked with their reason, and warnings rate-limited in the
// log.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// One record stuck downstream while later ones finish: the connection's
// reads pause at max_unacked (plus what one read holds) instead of taking
// the client's records without limit, and resume once the stuck record is
// finished, after which every record is acked.
func TestMaxUnackedPausesReadsBehindAStuckRecord(t *testing.T) {
	const (
		maxUnacked = 100
		readBuffer = 1024
		recLen     = len("rec 000000\n")
		records    = 5000 // fifty times max_unacked
		// What one read can add beyond max_unacked: its whole records, and
		// one more completed from the previous read's tail.
		bound = maxUnacked + readBuffer/recLen + 1
	)
	// The sink's handler holds record 1 until released, inside Handle as
	// a sink retrying a batch does: a handler finishes its events before
	// it returns (the runtime reuses them then). The other worker goes on
	// with the later records.
	reached, unstick := make(chan struct{}), make(chan struct{})
	// release lets record 1 finish once the sink has it (the reads may
	// pause before it reaches the sink: record 1 is unacked either way).
	release := sync.OnceFunc(func() {
		select {
		case <-reached:
		case <-time.After(wait):
			t.Error("record 1 never reached the sink")
		}
		close(unstick)
	})
	var r *rig
	r = newRig(t, map[string]any{"max_unacked": maxUnacked, "read_buffer": int64(readBuffer)}, stage.Settings{Workers: 2, Concurrency: 2},
		func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
			r.mu.Lock()
			for _, ev := range b {
				r.got = append(r.got, string(ev.Payload))
			}
			r.mu.Unlock()
			var stuck *stage.Event
			for _, ev := range b {
				if ev.Seq == 1 {
					stuck = ev
					continue
				}
				ev.Done(nil)
			}
			if stuck != nil { // stuck, like a batch being retried, until released
				close(reached)
				<-unstick
				stuck.Done(nil)
			}
			return nil
		})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the client is closed, which unblocks its writes
	c := r.dial(wire.Lines, nil)
	t.Cleanup(release) // first: the rig's drain needs record 1 finished
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range records {
			if _, err := c.Send(fmt.Appendf(nil, "rec %06d", i)); err != nil {
				return // the test failed and closed the client
			}
		}
		c.Flush() // blocks while the server is not reading; that is the point
	}()

	poll.Until(t, "reads to pause", func() bool {
		if n := r.in.Stage().Stats().In; n > uint64(bound) {
			t.Fatalf("the source read %d records with record 1 unacked; max_unacked %d allows at most %d", n, maxUnacked, bound)
		}
		return r.src.ReadsPaused() != 0
	})
	// Paused: nothing more is read until record 1 is finished.
	read := r.in.Stage().Stats().In
	if read < maxUnacked || read > uint64(bound) {
		t.Fatalf("reads paused after %d records; want %d to %d", read, maxUnacked, bound)
	}
	if c.Acked() != 0 {
		t.Fatalf("acked %d with record 1 unfinished", c.Acked())
	}
	if r.src.ReadsPaused() != 1 || r.in.Stage().Stats().In != read {
		t.Fatalf("reads resumed (%d paused, %d read, was %d) with record 1 unfinished",
			r.src.ReadsPaused(), r.in.Stage().Stats().In, read)
	}

	release()
	wg.Wait()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != records || len(c.Nacks()) != 0 {
		t.Fatalf("acked %d, nacks %v; want %d acked", c.Acked(), c.Nacks(), records)
	}
	if got := len(r.payloads()); got != records {
		t.Fatalf("sink saw %d records, want %d", got, records)
	}
	// The reader resumes when the acks move, but may run a moment after
	// the client has read them.
	poll.Until(t, "no connection paused after everything was acked", func() bool { return r.src.ReadsPaused() == 0 })
}

// StopInput and Drain do not wait on a reader paused by max_unacked:
// StopInput returns at once, and Drain acks every record read once the
// stuck one is finished.
func TestStopInputWhileReadsPaused(t *testing.T) {
	const maxUnacked = 20
	// Record 1 is held inside the sink's Handle until released (a handler
	// finishes its events before it returns).
	reached, unstick := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(unstick) })
	r := newRig(t, map[string]any{"max_unacked": maxUnacked, "read_buffer": int64(128)}, stage.Settings{Workers: 2, Concurrency: 2},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			var stuck *stage.Event
			for _, ev := range b {
				if ev.Seq == 1 {
					stuck = ev
					continue
				}
				ev.Done(nil)
			}
			if stuck != nil {
				close(reached)
				<-unstick
				stuck.Done(nil)
			}
			return nil
		})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(release) // first: the client and the rig's drain need record 1 finished
	c := r.dial(wire.Lines, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 2000 {
			if _, err := c.Send(fmt.Appendf(nil, "rec %d", i)); err != nil {
				return
			}
		}
		c.Flush()
	}()
	select {
	case <-reached:
	case <-time.After(wait):
		t.Fatal("record 1 never arrived")
	}
	poll.Until(t, "reads to pause", func() bool { return r.src.ReadsPaused() != 0 })
	// Everything but record 1 finished, so no ack flush is left to wake
	// the paused reader: StopInput itself must.
	poll.Until(t, "only record 1 in flight", func() bool { return r.in.Stage().InFlight() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	read := r.in.Stage().Stats().In
	release()
	go func() { <-c.Done(); c.Close() }() // the client closes after the server's EOF
	if err := r.src.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if c.Acked() != read || read < maxUnacked {
		t.Fatalf("read %d, acked %d: want every record read acked", read, c.Acked())
	}
}

// Under ack: none there is no ack to wait for: max_unacked counts records
// not yet finished, and reads resume as they finish.
func TestMaxUnackedAckNonePausesOnUnfinished(t *testing.T) {
	const maxUnacked, records = 10, 2000
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{"ack": string(netio.AckNone), "max_unacked": maxUnacked, "read_buffer": int64(64)}, stage.Settings{Workers: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	c := r.dial(wire.Lines, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range records {
			if _, err := c.Send(fmt.Appendf(nil, "r%d", i)); err != nil {
				return
			}
		}
		c.CloseWrite()
	}()
	poll.Until(t, "reads to pause", func() bool { return r.src.ReadsPaused() != 0 })
	if n := r.in.Stage().Stats().In; n < maxUnacked || n > maxUnacked+64/3+1 {
		t.Fatalf("reads paused after %d records; want %d to %d", n, maxUnacked, maxUnacked+64/3+1)
	}
	close(gate)
	waitEOF(t, c)
	wg.Wait()
	if got := len(r.payloads()); got != records {
		t.Fatalf("sink saw %d records, want %d", got, records)
	}
}

func TestMaxUnackedField(t *testing.T) {
	if _, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0", "max_unacked": -1}); err == nil || !strings.Contains(err.Error(), "max_unacked") {
		t.Fatalf("max_unacked -1: %v", err)
	}
	src, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "max_unacked": 7}, stage.Env{Stage: "in"})
	if err != nil {
		t.Fatal(err)
	}
	if o := netio.OptionsOf(src); o.MaxUnacked != 7 {
		t.Fatalf("max_unacked %d, want 7", o.MaxUnacked)
	}
}

// A protocol error's nack says what was wrong, on one bounded line.
func TestBadFrameNackSaysWhy(t *testing.T) {
	r := newRig(t, map[string]any{"framing": string(netio.OctetCounted)}, stage.Settings{Workers: 1}, nil)
	for _, tc := range []struct{ raw, why string }{
		{"05 hello", "frame length starts with 0"},
		{" hello", "empty frame length"},
		{"1234567890 x", "frame length has more than 9 digits"},
		{"3\x00abc", `byte '\x00' where a frame length digit or space was expected`},
	} {
		c := r.dial(wire.OctetCounted, nil)
		c.Send([]byte("fine"))
		c.SendRaw([]byte(tc.raw), 1)
		c.Flush()
		if err := c.WaitTimeout(wait); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		waitEOF(t, c)
		want := wire.Reply{Nack: true, N: 2, Reason: "bad frame: " + tc.why}
		if n := c.Nacks(); len(n) != 1 || n[0] != want {
			t.Fatalf("%q: nacks %v, want %v", tc.raw, n, want)
		}
	}
}

// queue.overflow: reject cannot apply to a source, which always pushes
// back on its sockets: the constructor says so, pointing at the field,
// instead of ignoring it.
func TestOverflowRejectIsRefused(t *testing.T) {
	cfg := map[string]any{"listen": "127.0.0.1:0"}
	_, err := buildSource(cfg, stage.Env{Stage: "in", Settings: stage.Settings{Overflow: port.Reject}.WithDefaults()})
	var fe *stage.FieldError
	if !errors.As(err, &fe) || fe.Field != "queue.overflow" ||
		!strings.Contains(err.Error(), "backpressure") || !strings.Contains(err.Error(), "stage after") {
		t.Fatalf("overflow reject: %v", err)
	}
	if _, err := buildSource(cfg, stage.Env{Stage: "in", Settings: stage.Settings{Overflow: port.Block}.WithDefaults()}); err != nil {
		t.Fatalf("overflow block: %v", err)
	}

	// Through the loader: the error points at the field.
	yaml := "name: t\nstages:\n  in:\n    kind: netio.tcp\n    listen: 127.0.0.1:0\n    queue: {capacity: 16, overflow: reject}\n    next: out\n  out:\n    kind: test.sink\n"
	p, err := yamlPipeline(t, yaml)
	if err == nil {
		t.Fatalf("pipeline built with overflow: reject on its source: %v", p)
	}
	if !strings.Contains(err.Error(), "p.yaml:6:") || !strings.Contains(err.Error(), "queue.overflow") {
		t.Fatalf("error not at the field: %v", err)
	}
}

// Under ack: none a refused record is logged, naming the connection, the
// record and the reason, at most once a second with a running count.
func TestAckNoneLogsRefusalsRateLimited(t *testing.T) {
	const records = 300
	started := time.Now()
	r := newRig(t, map[string]any{"ack": string(netio.AckNone)}, stage.Settings{Workers: 2, Concurrency: 2}, nil)
	c := r.dial(wire.Lines, nil)
	for i := 1; i <= records; i++ {
		c.Send(fmt.Appendf(nil, "bad %d", i)) // the rig's sink refuses these
	}
	c.CloseWrite()
	waitEOF(t, c)
	poll.Until(t, "no longer: r.in.Stage().InFlight() != 0", func() bool { return !(r.in.Stage().InFlight() != 0) })
	var lines []string
	for _, e := range r.logs.All() {
		if !strings.Contains(e.Message, "record refused") {
			continue
		}
		lines = append(lines, e.Message)
		if e.Level != zapcore.WarnLevel {
			t.Errorf("refusal logged at %s, want warn", e.Level)
		}
		conn, _ := fieldOf(e, "conn")
		remote, _ := fieldOf(e, "remote")
		rec, _ := fieldOf(e, "record")
		why, _ := fieldOf(e, "reason")
		count, _ := fieldOf(e, "refused_total")
		if conn.Integer != 1 || remote.String != c.LocalAddr().String() || rec.Integer < 1 || rec.Integer > records ||
			why.String != badReason || count.Integer < 1 || count.Integer > records {
			t.Errorf("refusal logged with conn %d remote %q record %d reason %q count %d",
				conn.Integer, remote.String, rec.Integer, why.String, count.Integer)
		}
	}
	elapsed := time.Since(started)
	// One line a second at most: 300 refusals within a few seconds give a
	// handful of lines, not 300.
	if len(lines) == 0 || len(lines) > int(elapsed/time.Second)+1 {
		t.Fatalf("%d refusal lines in %s for %d refusals", len(lines), elapsed, records)
	}
}

// logLines returns the entries of r's log whose message contains msg, and
// checks that each carries a running count under key between 1 and most.
func logLines(t *testing.T, r *rig, msg, key string, most int) []observer.LoggedEntry {
	t.Helper()
	es := r.logs.FilterMessageSnippet(msg).All()
	for _, e := range es {
		if n, ok := fieldOf(e, key); !ok || n.Integer < 1 || n.Integer > int64(most) {
			t.Errorf("%q logged with %s %d (%v), want 1 to %d", msg, key, n.Integer, ok, most)
		}
	}
	return es
}

// A client sending nothing but records over max_frame gets every one
// nacked and counted, and leaves at most one log line a second, each
// with the running count: it cannot flood the log.
func TestTooLargeLogRateLimited(t *testing.T) {
	const records = 2000
	started := time.Now()
	r := newRig(t, map[string]any{"max_frame": int64(16)}, stage.Settings{Workers: 1}, nil)
	c := r.dial(wire.Lines, nil)
	c.SendRaw(bytes.Repeat([]byte(strings.Repeat("x", 17)+"\n"), records), records)
	c.CloseWrite()
	if err := c.WaitTimeout(wait); err != nil || c.Nacked() != records {
		t.Fatalf("nacked %d of %d, %v", c.Nacked(), records, err)
	}
	waitEOF(t, c)
	if n := r.in.Stage().Stats().Source.Nacks.TooLarge; n != records {
		t.Fatalf("nacks.too_large %d, want %d", n, records)
	}
	lines := logLines(t, r, "record too large", "too_large_total", records)
	elapsed := time.Since(started)
	if len(lines) == 0 || len(lines) > int(elapsed/time.Second)+1 {
		t.Fatalf("%d lines in %s for %d records too large", len(lines), elapsed, records)
	}
}

// Connections that each end inside an octet-counted frame are all
// counted, and leave at most one log line a second, each with the running
// count: clients cannot flood the log.
func TestTruncatedFrameLogRateLimited(t *testing.T) {
	const conns = 300
	started := time.Now()
	r := newRig(t, map[string]any{"framing": string(netio.OctetCounted)}, stage.Settings{Workers: 1}, nil)
	for range conns {
		nc, err := net.Dial("tcp", r.src.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, "9 ab"); err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).CloseWrite()
		nc.SetReadDeadline(time.Now().Add(wait))
		if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
			t.Fatalf("the server replied %q, %v; want nothing and EOF", b, err)
		}
		nc.Close()
	}
	poll.Until(t, "every truncated frame counted", func() bool { return netio.Truncated(r.source) == conns })
	lines := logLines(t, r, "input ended inside a frame", "truncated_total", conns)
	elapsed := time.Since(started)
	if len(lines) == 0 || len(lines) > int(elapsed/time.Second)+1 {
		t.Fatalf("%d lines in %s for %d connections", len(lines), elapsed, conns)
	}
}
