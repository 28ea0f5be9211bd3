package e2e

// This file tests the controllers end to end against a slow PostgreSQL:
// default knobs settle where tuning by hand would, and admission with a
// pinned store sheds at the door while the pins hold.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// untunedYAML is the three-stage pipeline with no tuning keys: the
// controllers size every batch and pool.
func untunedYAML(dsn string) string {
	return `name: untuned
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    next: parse
  parse:
    kind: process.json
    require: [id]
    next: store
  store:
    kind: db.postgres
    dsn: ` + dsn + `
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
`
}

// watch samples a stage's control figures every 50 ms until stopped.
type watch struct {
	mu      sync.Mutex
	samples []stats.Stage
	stop    chan struct{}
	done    chan struct{}
}

func watchStage(p *pipeline.Pipeline, name string) *watch {
	w := &watch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			st, _ := p.StageStats(name)
			w.mu.Lock()
			w.samples = append(w.samples, st)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watch) end() []stats.Stage {
	close(w.stop)
	<-w.done
	return w.samples
}

// A pipeline written without tuning keys runs on the controllers: under a
// load the database cannot keep up with, the store's batches stay at their
// ceiling (a transaction per thousand rows, as tuning by hand gives, not
// per default batch) and its pool grows past its run slots while its
// workers wait in the database, while the parse stage, which never blocks,
// keeps its run slots; every record is acked and stored. (The speed itself
// is B5's: a test asserts the settled knobs, not a timing.)
//
// The database is made slow (each statement sleeps 300 ms, as B6's does
// for 50 ms), so that it, and not this machine's CPU under the race
// detector, is what the store waits on. With group commit the store runs
// one COPY at a time, holding the batches that waited during the one
// before: two workers then carry a batch of up to 16384 rows (a sink's
// ceiling) per 300 ms (fewer batches than the controller has 250-ms
// windows, so some windows take none while the queue is full), and more
// workers carry more per COPY. The clients keep 16 × 8,000 records in
// flight: with 2,000 each, the two workers' batches held nearly all of
// them, the queue never held a batch, and another worker could rightly
// not help.
// Against a fast database on 2 cores the pool controller may rightly find
// nothing to gain from another worker within a short run.
func TestDefaultsSettleOnTunedKnobs(t *testing.T) {
	dsn := pg.NewDatabase(t)
	exec1(t, dsn, `
CREATE TABLE events (id bigint PRIMARY KEY, body jsonb);
CREATE FUNCTION slow_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION slow_statement();`)
	r := startPipeline(t, registry(t), untunedYAML(dsn), nil, nil, "accept")
	store, parse := watchStage(r.p, "store"), watchStage(r.p, "parse")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 400_000
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: r.addr, Conns: 16, Records: n, Window: 8000})
	ss, ps := store.end(), parse.end()
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.Err(); err != nil || lr.Acked != n {
		t.Fatalf("acked %d of %d: %v", lr.Acked, n, err)
	}
	r.stop()
	if rows, distinct := counts(t, dsn, "events"); rows != n || distinct != n {
		t.Fatalf("%d rows (%d distinct), want %d", rows, distinct, n)
	}

	ceiling := stage.Settings{Terminal: true}.WithDefaults().Batch
	minBatch, maxWorkers, slots := ceiling, 0, 0
	for _, s := range ss {
		c := s.Control
		if !c.Batch.Auto || !c.Workers.Auto {
			t.Fatalf("store knobs not auto: %+v %+v", c.Batch, c.Workers)
		}
		minBatch, maxWorkers, slots = min(minBatch, c.Batch.Now), max(maxWorkers, c.Workers.Now), s.Pool.Concurrency
	}
	t.Logf("store: batch %d..%d, workers up to %d (run slots %d), %d samples", minBatch, ceiling, maxWorkers, slots, len(ss))
	if minBatch < ceiling/2 {
		t.Errorf("the store's batch fell to %d under load, want it near its ceiling %d", minBatch, ceiling)
	}
	if maxWorkers <= slots {
		t.Errorf("the store's pool never grew past its %d run slots while its workers waited in the database", slots)
	}
	for _, s := range ps {
		if s.Control.Workers.Now > s.Pool.Concurrency {
			t.Fatalf("the parse stage, which never blocks, got %d workers for %d run slots", s.Control.Workers.Now, s.Pool.Concurrency)
		}
	}
}

// The held-out check's keys: admission: {target: 250ms} on netio.tcp and a
// store pinned by batch: 200, workers: 4 and max_conns: 4. Offered more
// than a slow database takes, the source sheds at the door: every record is
// answered, every refusal is busy, what is acked is stored, and the pinned
// knobs never move.
func TestAdmissionAndPinnedStore(t *testing.T) {
	dsn := pg.NewDatabase(t)
	slowTable(t, dsn) // 2 ms per row: a few hundred rows a second
	yaml := `name: admission
admin: {listen: 127.0.0.1:0}
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    admission: {target: 250ms}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ` + dsn + `
    table: events
    columns: {id: id, body: $}
    key: [id]
    conflict: ignore
    batch: 200
    workers: 4
    max_conns: 4
`
	r := startPipeline(t, registry(t), yaml, nil, nil, "accept")
	store := watchStage(r.p, "store")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: r.addr, Conns: 8, Duration: 2 * time.Second, Rate: 5000,
		Window: 5000, CollectIDs: true})
	ss := store.end()
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.Err(); err != nil {
		t.Fatalf("%v (sent %d, acked %d, nacked %d)", err, lr.Sent, lr.Acked, lr.Nacked)
	}
	if lr.Acked+lr.Nacked != lr.Sent || lr.Nacked == 0 {
		t.Fatalf("sent %d, acked %d, nacked %d: want every record answered and some refused", lr.Sent, lr.Acked, lr.Nacked)
	}
	for reason := range lr.Nacks {
		if reason != "busy" {
			t.Errorf("nacks %v: want busy only", lr.Nacks)
		}
	}
	exec1(t, dsn, "UPDATE ctl SET slow = false")
	acc := stageStats(t, r.p, "accept")
	r.stop()
	stored := storedIDs(t, dsn, "events")
	for _, id := range lr.AckedIDs {
		if !stored[id] {
			t.Fatalf("acked id %d is not stored", id)
		}
	}
	if a := acc.Control.Admission; a == nil || a.TargetMs != 250 || a.Shed == 0 || acc.Source.Nacks.Busy == 0 {
		t.Errorf("source figures: %+v, %+v", acc.Control, acc.Source)
	}
	for _, s := range ss {
		c := s.Control
		if c.Batch.Auto || c.Batch.Now != 200 || c.Workers.Auto || c.Workers.Now != 4 || s.Pool.Workers != 4 {
			t.Fatalf("pinned store moved: batch %+v workers %+v pool %+v", c.Batch, c.Workers, s.Pool)
		}
	}
}
