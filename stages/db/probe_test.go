package db

// This file tests the probe of a write left unanswered: a silent network
// reads down within seconds, not at write_timeout, and a write waiting on
// a lock, the server answering, does not.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// storeRig is a sink run by the engine as a stage (so its health is
// judged as the pipeline's is), fed by a source stage.
type storeRig struct {
	t    *testing.T
	st   *engine.Stage
	l    engine.Lifecycle
	up   *engine.Stage
	em   stage.Emitter
	rec  *recorder
	ctx  context.Context
	sent int
}

func startStoreRig(t *testing.T, s *Sink) *storeRig {
	t.Helper()
	st, l := engine.NewHandlerStage(stage.Settings{Name: "store", Kind: Kind, Terminal: true, Workers: 1, Batch: 100}, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	if err := l.Start(ctx); err != nil { // the engine starts the sink
		t.Fatal(err)
	}
	up, upL := engine.NewSourceStage(stage.Settings{Name: "up"}, nil, nil)
	upL.Connect(st, nil)
	r := &storeRig{t: t, st: st, l: l, up: up, em: up.NewEmitter(), rec: &recorder{}, ctx: ctx}
	t.Cleanup(func() { l.CloseQueue(); l.Wait() })
	return r
}

// send emits n more records (ids follow the last sent).
func (r *storeRig) send(n int) {
	r.t.Helper()
	for range n {
		id := r.sent
		r.sent++
		if err := r.em.Emit(r.ctx, recordOn(r.up, r.rec, uint64(id), json.Number(fmt.Sprint(id)), nil)); err != nil {
			r.t.Fatal(err)
		}
	}
	r.em.Flush(r.ctx)
}

func (r *storeRig) health() stats.Health { return r.st.Stats().Health }

// allAcked waits until every record sent is acked, none nacked.
func (r *storeRig) allAcked() {
	r.t.Helper()
	poll.Until(r.t, "every record acked", func() bool { acked, _ := r.rec.results(); return acked == r.sent })
	if _, nacked := r.rec.results(); len(nacked) != 0 {
		r.t.Fatalf("nacked: %v", nacked)
	}
}

// TestSilentNetworkProbedDown: the network to PostgreSQL is cut silently
// (a partition: nothing answers, nothing fails) while a write runs, with
// write_timeout a minute. The write waits, but the probe the sink makes
// after probeAfter gets no answer either, so the stage reads down, naming
// the probe and not the password, while the write still waits (no write
// has failed yet: write_timeout has not passed). Before, the stage read
// only degraded ("a call has run for ...") until write_timeout, and
// /readyz answered 200. Once the partition heals (the held connections
// reset) the write is retried, the stage reads ok, and every record is
// stored once.
func TestSilentNetworkProbedDown(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			const secret = "hunter2secret"
			dsn := pg.NewDatabase(t)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.UserPassword(u.User.Username(), secret) // trust: the server asks for none
			viaProxy, px := proxied(t, u.String())
			log, logs := observed()
			s := newSink(t, config(viaProxy, map[string]any{"method": method, "conflict": "ignore",
				"write_timeout": time.Minute}), log)
			r := startStoreRig(t, s)
			// Should the test fail during the partition, the stage stops
			// once it heals: the cleanups run in reverse.
			t.Cleanup(func() { px.Heal() })
			r.send(100)
			r.allAcked()
			if h := r.health(); h.State != stats.HealthOK {
				t.Fatalf("before the cut: %+v", h)
			}

			px.Partition()
			r.send(400)
			poll.Until(t, "the store to read down", func() bool { return r.health().State == stats.HealthDown })
			h := r.health()
			failedWrites := len(logs.FilterMessage("PostgreSQL write failed; retrying the batch").All())
			if !strings.Contains(h.Error, "did not answer a probe") || strings.Contains(h.Error, secret) || failedWrites != 0 {
				t.Fatalf("down with %q after %d failed writes; want the probe's failure, no password, the write still waiting", h.Error, failedWrites)
			}
			if acked, _ := r.rec.results(); acked != 100 {
				t.Fatalf("%d acked during the partition, want the 100 of before", acked)
			}

			healed := px.Heal()
			poll.Until(t, "the store to read ok after the heal", func() bool { return r.health().State == stats.HealthOK })
			r.allAcked()
			db := connect(t, dsn)
			if n, d := count(t, db, "SELECT count(*) FROM events"), count(t, db, "SELECT count(DISTINCT id) FROM events"); n != 500 || d != 500 {
				t.Fatalf("count(*)=%d distinct=%d, want 500 each", n, d)
			}
			t.Logf("down: %s; the heal reset %d connections; %d probes failed", h.Error, healed, s.probesFailed.Load())
		})
	}
}

// TestLockedWriteNotDown: a write waiting on a lock (another session holds
// the table in ACCESS EXCLUSIVE mode) is slow, not an outage: the probes
// made while it waits are answered, and the stage never reads down nor
// counts a failure. Once the lock is released the write commits.
func TestLockedWriteNotDown(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := newSink(t, config(dsn, map[string]any{"method": method, "write_timeout": time.Minute}), nil)
			r := startStoreRig(t, s)
			r.send(10)
			r.allAcked()

			db := connect(t, dsn)
			unlock := lockEvents(t, dsn)
			r.send(100)
			// Two answered: a failure of the first would have made the
			// stage down (2 s) before the second (probeAfter, 5 s).
			poll.Until(t, "two probes answered while the write waits on the lock", func() bool {
				if h := r.health(); h.State == stats.HealthDown {
					t.Fatalf("the store reads down while waiting on a lock: %+v", h)
				}
				return s.probesAnswered.Load() >= 2
			})
			if h := r.health(); h.State == stats.HealthDown || h.Failures != 0 || s.probesFailed.Load() != 0 {
				t.Fatalf("health %+v, %d probes failed; want no failure", h, s.probesFailed.Load())
			}
			if acked, _ := r.rec.results(); acked != 10 {
				t.Fatalf("%d acked while the table is locked, want 10", acked)
			}
			unlock()
			r.allAcked()
			poll.Until(t, "the store to read ok", func() bool { return r.health().State == stats.HealthOK })
			if n := count(t, db, "SELECT count(*) FROM events"); n != 110 {
				t.Fatalf("%d rows, want 110", n)
			}
		})
	}
}

// TestProbeAnsweredAfterAHiccup: a write waits on a lock, and the network
// stalls for one probe, which fails (the stage reads down); once the
// network resumes, the next probe is answered, and the stage no longer
// reads down while the write still waits. Before, the answered probes
// reported nothing, and one failed probe held the stage down (and /readyz
// at 503) until the write ended, up to write_timeout.
func TestProbeAnsweredAfterAHiccup(t *testing.T) {
	dsn := pg.NewDatabase(t)
	viaProxy, px := proxied(t, dsn)
	s := newSink(t, config(viaProxy, map[string]any{"method": "copy", "write_timeout": time.Minute}), nil)
	r := startStoreRig(t, s)
	t.Cleanup(func() { px.Resume() })
	r.send(10)
	r.allAcked()
	unlock := lockEvents(t, dsn)
	r.send(100)
	px.Stall()
	poll.Until(t, "a probe failed during the stall", func() bool { return s.probesFailed.Load() >= 1 })
	px.Resume()
	answered := s.probesAnswered.Load()
	poll.Until(t, "a probe answered after the stall", func() bool { return s.probesAnswered.Load() > answered })
	if h := r.health(); h.State == stats.HealthDown {
		t.Errorf("down although the server answered the last probe: %+v", h)
	}
	if acked, _ := r.rec.results(); acked != 10 {
		t.Fatalf("%d acked while the table is locked, want 10", acked)
	}
	unlock()
	r.allAcked()
	poll.Until(t, "the store to read ok", func() bool { return r.health().State == stats.HealthOK })
}

// lockEvents holds the table events locked in ACCESS EXCLUSIVE mode, on a
// connection of its own, until the func it returns is called: a write
// waits on the lock, the server answering all the while.
func lockEvents(t *testing.T, dsn string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := connect(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
