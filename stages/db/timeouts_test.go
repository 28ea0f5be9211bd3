package db

// This file tests write_timeout: its value beside statement_timeout, a
// write to a silent network given up and retried, and Close after such a
// write was cut short.

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/faultproxy"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

func TestWriteTimeoutConfig(t *testing.T) {
	for _, c := range []struct {
		statement, write, want time.Duration
	}{
		{0, 0, DefaultWriteTimeout},
		{2 * time.Second, 0, 2*time.Second + writeTimeoutGrace},
		{0, 3 * time.Second, 3 * time.Second},
		{time.Second, 3 * time.Second, 3 * time.Second},
		{2 * time.Second, 2 * time.Second, -1}, // not longer: refused
		{3 * time.Second, time.Second, -1},
	} {
		over := map[string]any{}
		if c.statement > 0 {
			over["statement_timeout"] = c.statement
		}
		if c.write > 0 {
			over["write_timeout"] = c.write
		}
		s, err := build(config("postgres://u@127.0.0.1:1/db", over), stage.Env{Stage: "store"})
		var fe *stage.FieldError
		switch {
		case c.want < 0:
			if !errors.As(err, &fe) || fe.Field != "write_timeout" {
				t.Errorf("statement_timeout %s, write_timeout %s: %v, want an error about write_timeout", c.statement, c.write, err)
			}
		case err != nil:
			t.Errorf("statement_timeout %s, write_timeout %s: %v", c.statement, c.write, err)
		case s.writeTimeout != c.want:
			t.Errorf("statement_timeout %s, write_timeout %s: a write may take %s, want %s", c.statement, c.write, s.writeTimeout, c.want)
		}
	}
}

// proxied returns dsn with its host replaced by a fault proxy's, and the
// proxy, closed when the test ends.
func proxied(t *testing.T, dsn string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	u.Host = px.Addr()
	return u.String(), px
}

// TestSilentNetworkTimesOut: behind a partition that never answers, a
// write gives up at write_timeout and is retried (its retries too: a new
// connection gets no answer either) instead of holding the worker; once
// the partition heals the batch commits, every event acked once and
// stored once.
func TestSilentNetworkTimesOut(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			viaProxy, px := proxied(t, dsn)
			log, logs := observed()
			// conflict: ignore, as an at-least-once pipeline runs: on a
			// loaded machine a write after the heal may commit and still
			// time out, and its retry then meets its own rows.
			s := newSink(t, config(viaProxy, map[string]any{"method": method, "conflict": "ignore",
				"write_timeout": time.Second}), log)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 100))

			px.Partition()
			done := make(chan error, 1)
			go func() { done <- s.Handle(ctx, batchOf(rec, 100, 600), nil) }()
			timedOut := func() int {
				n := 0
				for _, e := range logs.FilterMessage("PostgreSQL write failed; retrying the batch").All() {
					if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, "(write_timeout)") {
						n++
					}
				}
				return n
			}
			poll.Until(t, "two writes to time out behind the partition", func() bool { return timedOut() >= 2 })
			healed := px.Heal()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if acked, nacked := rec.results(); acked != 600 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			if n := count(t, connect(t, dsn), "SELECT count(*) FROM events"); n != 600 {
				t.Fatalf("%d rows, want 600", n)
			}
			t.Logf("%d writes timed out behind the partition; the heal reset %d connections", timedOut(), healed)
		})
	}
}

// TestCloseAfterCutWriteOnSilentNetwork: a write cut short by a forced
// stop (its ctx cancelled, as the engine's abort does) on a network gone
// silent leaves pgx closing its connection in the background: a cancel
// request over a new connection, which nothing answers, for up to 15 s.
// Close no longer waits for that: it ends the sockets pgx is still
// closing, so it returns while the network is still silent. Before, a
// forced Stop with a 1 s deadline returned after 16 s.
func TestCloseAfterCutWriteOnSilentNetwork(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			viaProxy, px := proxied(t, dsn)
			s := newSink(t, config(viaProxy, map[string]any{"method": method, "max_conns": 1}), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 10))

			px.Stall()
			defer px.Resume()
			hctx, abort := context.WithCancel(ctx)
			handled := make(chan error, 1)
			go func() { handled <- s.Handle(hctx, batchOf(rec, 10, 110), nil) }()
			poll.Until(t, "the write to hold the connection", func() bool { return s.pool.Stat().AcquiredConns() == 1 })
			abort()
			var err error
			poll.Until(t, "Handle to return once cut", func() bool {
				select {
				case err = <-handled:
					return true
				default:
					return false
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Handle returned %v, want the cancel", err)
			}
			closed := make(chan struct{})
			go func() { _ = s.Close(); close(closed) }()
			// Close must return while the network is still silent. The
			// bound is far above what it takes (no network round trip)
			// and below the 15 s that pgx's background close waits for
			// an answer to its cancel request.
			bound := time.NewTimer(10 * time.Second)
			defer bound.Stop()
			select {
			case <-closed:
			case <-bound.C:
				t.Fatal("Close still waits for pgx to close the cut connection on the silent network")
			}
			if acked, _ := rec.results(); acked != 10 {
				t.Fatalf("acked %d, want only the 10 written before the stall", acked)
			}
		})
	}
}
