package db

// This file tests conflict: update and version: every key ends at its last
// update (or highest version), one row per key in a batch and a group,
// NULL key parts, and the load table's life behind a pooler.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// upsertConfig is the table of the held-out check: id, seq and the
// record, keyed by id, conflict: update.
func upsertConfig(dsn string, over map[string]any) stage.Config {
	v := map[string]any{
		"columns":  [][2]string{{"id", "id"}, {"seq", "seq"}, {"body", "$"}},
		"types":    [][2]string{{"id", "bigint"}, {"seq", "bigint"}},
		"conflict": "update",
	}
	for k, x := range over {
		v[k] = x
	}
	return config(dsn, v)
}

// seqs counts the events made by update, so that each has its own Seq (the
// recorder's key).
var seqs atomic.Uint64

// update makes an event for key id at version seq.
func update(rec *recorder, id, seq int) *stage.Event { return updateOn(src, rec, id, seq) }

// updateOn is update made by st, the source stage that emits it.
func updateOn(st *engine.Stage, rec *recorder, id, seq int) *stage.Event {
	return recordOn(st, rec, seqs.Add(1), json.Number(fmt.Sprint(id)), map[string]any{"seq": json.Number(fmt.Sprint(seq))})
}

// stored returns the seq each key's row holds, and checks that the record
// stored with it is the one of that seq.
func stored(t *testing.T, dsn string) map[int64]int64 {
	t.Helper()
	db := connect(t, dsn)
	rows, err := db.Query(context.Background(), "SELECT id, seq, body->>'seq' FROM events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]int64{}
	for rows.Next() {
		var id, seq int64
		var body string
		if err := rows.Scan(&id, &seq, &body); err != nil {
			t.Fatal(err)
		}
		if body != fmt.Sprint(seq) {
			t.Fatalf("key %d: seq %d with the record of seq %s", id, seq, body)
		}
		got[id] = seq
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// withSeq is record's payload with the seq in it, so that the stored record
// tells which update it was.
func withSeq(ev *stage.Event, seq int) {
	var m map[string]any
	_ = json.Unmarshal(ev.Payload, &m)
	m["seq"] = seq
	ev.Payload, _ = json.Marshal(m)
}

// upserts is a db.postgres stage run by the engine: several workers,
// shard_by when asked, and a handler in front of the sink that makes the
// first batch wait until another batch is being handled beside it, so
// that batches interleave for certain.
type upserts struct {
	t      *testing.T
	st     *engine.Stage
	l      engine.Lifecycle
	up     *engine.Stage
	em     *engine.Outputs
	rec    *recorder
	inside atomic.Int32
	most   atomic.Int32
	first  sync.Once
}

func startUpserts(t *testing.T, cfg stage.Config, set stage.Settings) *upserts {
	t.Helper()
	set.Name, set.Kind, set.Terminal = "store", Kind, true
	sink := newSink(t, cfg, nil)
	u := &upserts{t: t, rec: &recorder{}}
	u.st, u.l = engine.NewHandlerStage(set, stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		in := u.inside.Add(1)
		defer u.inside.Add(-1)
		for m := u.most.Load(); in > m && !u.most.CompareAndSwap(m, in); m = u.most.Load() {
		}
		u.first.Do(func() {
			stage.Blocking(ctx, func() {
				poll.Until(t, "a second batch beside the first", func() bool { return u.most.Load() >= 2 })
			})
		})
		return sink.Handle(ctx, b, out)
	}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sink.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var upL engine.Lifecycle
	u.up, upL = engine.NewSourceStage(stage.Settings{Name: "up"}, nil, nil)
	upL.Connect(u.st, nil)
	u.em = u.up.NewEmitter()
	t.Cleanup(u.stop)
	return u
}

func (u *upserts) emit(evs ...*stage.Event) {
	for _, ev := range evs {
		if err := u.em.Emit(context.Background(), ev); err != nil {
			u.t.Fatal(err)
		}
	}
	u.em.Flush(context.Background())
}

func (u *upserts) stop() {
	u.l.CloseQueue()
	u.l.Wait()
	if n := u.st.Stats().Panics; n != 0 {
		u.t.Errorf("the handler panicked %d times", n)
	}
}

// Several workers write updates of 100 keys, 30 each, in runs of three
// updates of a key (so that batches hold several updates of a key and
// dedup), batches interleaving: with shard_by every key ends at its last
// update, with copy and with insert, without version.
func TestUpsertEveryKeyEndsAtItsLastUpdate(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			u := startUpserts(t, upsertConfig(dsn, map[string]any{"method": method}),
				stage.Settings{Workers: 4, Batch: 8, ShardBy: []string{"id"}})
			const keys, updates = 100, 30
			for r := 0; r < updates; r += 3 {
				for k := range keys {
					for s := r; s < r+3; s++ {
						ev := updateOn(u.up, u.rec, k, s)
						withSeq(ev, s)
						u.emit(ev)
					}
				}
			}
			poll.Until(t, "every update finished", func() bool { a, n := u.rec.results(); return a+len(n) == keys*updates })
			if acked, nacked := u.rec.results(); acked != keys*updates || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			got := stored(t, dsn)
			if len(got) != keys {
				t.Fatalf("%d rows, want %d", len(got), keys)
			}
			for k, s := range got {
				if s != updates-1 {
					t.Fatalf("key %d holds seq %d, want its last update %d", k, s, updates-1)
				}
			}
			if u.most.Load() < 2 {
				t.Fatal("batches never interleaved")
			}
		})
	}
}

// With version, the order of the writes does not matter: without
// shard_by, four workers, every key ends at its highest seq, and resent
// old updates afterwards change nothing (and are acked).
func TestUpsertVersion(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			u := startUpserts(t, upsertConfig(dsn, map[string]any{"method": method, "version": "seq"}),
				stage.Settings{Workers: 4, Batch: 8})
			const keys, updates = 50, 20
			for s := range updates {
				for k := range keys {
					ev := updateOn(u.up, u.rec, k, s)
					withSeq(ev, s)
					u.emit(ev)
				}
			}
			for k := range keys { // resent old updates
				ev := updateOn(u.up, u.rec, k, 3)
				withSeq(ev, 3)
				u.emit(ev)
			}
			poll.Until(t, "every update finished", func() bool { a, n := u.rec.results(); return a+len(n) == keys*(updates+1) })
			if acked, nacked := u.rec.results(); acked != keys*(updates+1) || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			got := stored(t, dsn)
			for k := range keys {
				if s := got[int64(k)]; s != updates-1 {
					t.Fatalf("key %d holds seq %d, want %d", k, s, updates-1)
				}
			}
		})
	}
}

// A resent older update does not overwrite a newer one under version,
// whether it comes in a later batch or in the same batch after it; without
// version the last one wins. Within a batch only one row per key is
// written (PostgreSQL would refuse two: 21000), and every event is acked.
func TestUpsertDedupWithinBatch(t *testing.T) {
	for _, method := range methods {
		for _, version := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s version %v", method, version), func(t *testing.T) {
				dsn := pg.NewDatabase(t)
				over := map[string]any{"method": method}
				if version {
					over["version"] = "seq"
				}
				s := startSink(t, upsertConfig(dsn, over))
				rec := &recorder{}
				mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
				handle(t, s, []*stage.Event{mk(1, 5), mk(2, 1), mk(1, 6), mk(2, 2), mk(1, 7), mk(3, 1)})
				if got := stored(t, dsn); got[1] != 7 || got[2] != 2 || got[3] != 1 || len(got) != 3 {
					t.Fatalf("stored %v, want 1:7 2:2 3:1", got)
				}
				db := connect(t, dsn)
				if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events"); n != 1 {
					t.Fatalf("the batch took %d transactions, want 1: one statement, a row per key", n)
				}
				// An old update in the same batch after a newer one, and
				// one resent in a later batch.
				handle(t, s, []*stage.Event{mk(1, 9), mk(1, 4), mk(2, 1)})
				want := map[int64]int64{1: 4, 2: 1, 3: 1} // the last writer wins
				if version {
					want = map[int64]int64{1: 9, 2: 2, 3: 1}
				}
				if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("stored %v, want %v", got, want)
				}
				if acked, nacked := rec.results(); acked != 9 || len(nacked) != 0 {
					t.Fatalf("acked %d, nacked %v", acked, nacked)
				}
			})
		}
	}
}

// A group's batches hold updates of one key: one row per key across the
// group, the later batch's (or the higher version).
func TestUpsertDedupAcrossGroup(t *testing.T) {
	for _, version := range []bool{false, true} {
		t.Run(fmt.Sprintf("version %v", version), func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			over := map[string]any{}
			if version {
				over["version"] = "seq"
			}
			s := startSink(t, upsertConfig(dsn, over))
			rec := &recorder{}
			mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
			handle(t, s, []*stage.Event{mk(1, 0)})
			release, errs := groupOf(t, s, dsn, []*stage.Event{mk(9, 0)},
				[]*stage.Event{mk(1, 2), mk(2, 5)}, []*stage.Event{mk(1, 3), mk(2, 4)})
			release()
			waitAll(t, errs...)
			want := map[int64]int64{1: 3, 2: 4, 9: 0}
			if version {
				want[2] = 5
			}
			if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("stored %v, want %v", got, want)
			}
			if acked, nacked := rec.results(); acked != 6 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			db := connect(t, dsn)
			if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events WHERE id IN (1, 2)"); n != 1 {
				t.Fatalf("keys 1 and 2 written by %d transactions, want 1 (the group)", n)
			}
		})
	}
}

// A key with a NULL part is equal to no other in a unique index whose
// NULLs are distinct (PostgreSQL's default): ON CONFLICT never fires for
// it, so two rows (1, NULL) in a write are two rows, neither supersedes
// the other, and both are stored and acked, whatever their versions;
// rows of a key without NULLs are still one row per key. Under NULLS NOT
// DISTINCT (PostgreSQL 15) the NULLs are equal: the rows are one key,
// deduplicated in the write (one statement, no 21000 to bisect) and
// overwritten by a later one. With method copy in both formats and with
// insert; ext is missing in one record and null in the other.
func TestUpsertNullKeyParts(t *testing.T) {
	for _, notDistinct := range []bool{false, true} {
		for _, method := range []string{"copy", "copy text", "insert"} {
			for _, version := range []bool{false, true} {
				t.Run(fmt.Sprintf("nulls not distinct %v/%s/version %v", notDistinct, method, version), func(t *testing.T) {
					dsn := pg.NewDatabase(t)
					db := connect(t, dsn)
					nulls := ""
					if notDistinct {
						if count(t, db, "SELECT current_setting('server_version_num')::int") < 150000 {
							t.Skip("NULLS NOT DISTINCT needs PostgreSQL 15")
						}
						nulls = " NULLS NOT DISTINCT"
					}
					exec(t, db, "CREATE TABLE events (id bigint, ext text, seq bigint, body jsonb, at timestamptz, UNIQUE"+nulls+" (id, ext))")
					cols := [][2]string{{"id", "id"}, {"ext", "ext"}, {"seq", "seq"}, {"body", "$"}}
					if method == "copy text" {
						cols = append(cols, [2]string{"at", "at"}) // timestamptz: no binary format here
					}
					over := map[string]any{
						"create":   false,
						"method":   strings.TrimSuffix(method, " text"),
						"columns":  cols,
						"types":    nil,
						"key":      []string{"id", "ext"},
						"conflict": "update",
					}
					if version {
						over["version"] = "seq"
					}
					s := startSink(t, config(dsn, over))
					if want := method == "copy"; s.lay.Load().binary != want {
						t.Fatalf("binary %v, want %v", s.lay.Load().binary, want)
					}
					rec := &recorder{}
					n := uint64(0)
					// mk makes record n (body's n) of key (id, ext) at seq;
					// ext "" is missing, "null" is a JSON null.
					mk := func(id int, ext string, seq int) *stage.Event {
						n++
						extra := map[string]any{"seq": json.Number(fmt.Sprint(seq))}
						switch ext {
						case "":
						case "null":
							extra["ext"] = nil
						default:
							extra["ext"] = ext
						}
						return record(rec, n, json.Number(fmt.Sprint(id)), extra)
					}
					// table returns the rows as id/ext/seq/n, sorted.
					table := func() string {
						t.Helper()
						rows, err := db.Query(context.Background(), "SELECT id, COALESCE(ext, 'NULL'), seq, body->>'n' FROM events")
						if err != nil {
							t.Fatal(err)
						}
						var got []string
						var id, seq int64
						var ext, body string
						if _, err := pgx.ForEachRow(rows, []any{&id, &ext, &seq, &body}, func() error {
							got = append(got, fmt.Sprintf("%d/%s/%d/%s", id, ext, seq, body))
							return nil
						}); err != nil {
							t.Fatal(err)
						}
						slices.Sort(got)
						return strings.Join(got, " ")
					}

					// (2, NULL) first: were the batch bisected, its row would
					// keep the first half's transaction.
					handle(t, s, []*stage.Event{mk(2, "", 1), mk(1, "", 5), mk(1, "a", 1), mk(1, "null", 3), mk(1, "a", 2)})
					want := "1/NULL/3/4 1/NULL/5/2 1/a/2/5 2/NULL/1/1" // record 3 superseded by 5
					switch {
					case notDistinct && version:
						want = "1/NULL/5/2 1/a/2/5 2/NULL/1/1" // 4 superseded by 2, the higher version
					case notDistinct:
						want = "1/NULL/3/4 1/a/2/5 2/NULL/1/1" // 2 superseded by 4, the later
					}
					if got := table(); got != want {
						t.Fatalf("stored %s, want %s", got, want)
					}
					if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events"); n != 1 {
						t.Fatalf("the batch took %d transactions, want 1", n)
					}
					if acked, nacked := rec.results(); acked != 5 || len(nacked) != 0 {
						t.Fatalf("acked %d, nacked %v", acked, nacked)
					}

					// A later row (1, NULL): a further row, or under NULLS
					// NOT DISTINCT an update of the stored one (not under
					// version, where the stored seq 5 is higher).
					handle(t, s, []*stage.Event{mk(1, "", 4)})
					want = "1/NULL/3/4 1/NULL/4/6 1/NULL/5/2 1/a/2/5 2/NULL/1/1"
					switch {
					case notDistinct && version:
						want = "1/NULL/5/2 1/a/2/5 2/NULL/1/1"
					case notDistinct:
						want = "1/NULL/4/6 1/a/2/5 2/NULL/1/1"
					}
					if got := table(); got != want {
						t.Fatalf("stored %s, want %s", got, want)
					}
					if acked, nacked := rec.results(); acked != 6 || len(nacked) != 0 {
						t.Fatalf("acked %d, nacked %v", acked, nacked)
					}
				})
			}
		}
	}
}

// A batch that fails once and is retried inside the sink holds back the
// later updates of its key (shard_by): they wait in the key's mailbox,
// not in another worker, and are written after it, in order.
func TestUpsertOrderAcrossRetries(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			srvDSN := pg.NewDatabase(t)
			log, logs := observed()
			sink := newSink(t, upsertConfig(srvDSN, map[string]any{"method": method}), log)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, l := engine.NewHandlerStage(stage.Settings{Name: "store", Kind: Kind, Terminal: true, Workers: 4, Batch: 1,
				ShardBy: []string{"id"}}, sink, log)
			if err := l.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer l.Wait()
			defer l.CloseQueue()
			up, upL := engine.NewSourceStage(stage.Settings{Name: "up"}, nil, nil)
			upL.Connect(st, nil)
			em := up.NewEmitter()
			var mu sync.Mutex
			var order []int
			rec := &recorder{hook: func(ev *stage.Event, err error) {
				v, _ := ev.Value("seq")
				n, _ := v.AsInt()
				mu.Lock()
				order = append(order, int(n))
				mu.Unlock()
			}}
			emit := func(seq int) {
				ev := updateOn(up, rec, 7, seq)
				withSeq(ev, seq)
				em.Emit(ctx, ev)
				em.Flush(ctx)
			}

			locker := connect(t, srvDSN)
			tx, err := locker.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			exec(t, tx.Conn(), "LOCK TABLE events IN SHARE MODE")
			emit(1)
			waitBlocked(t, srvDSN)
			// Fail the write once: cut its connection. The sink retries it.
			if n := count(t, locker, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock') AS cut"); n == 0 {
				t.Fatal("no waiting write to cut")
			}
			poll.Until(t, "the retry", func() bool { return logs.FilterMessage("PostgreSQL write failed; retrying the batch").Len() > 0 })
			emit(2)
			emit(3)
			poll.Until(t, "the later updates in the key's mailbox", func() bool { return st.Stats().Shards.Queued == 2 })
			if acked, nacked := rec.results(); acked != 0 || len(nacked) != 0 {
				t.Fatalf("finished before the lock went: acked %d, nacked %v", acked, nacked)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			poll.Until(t, "the three updates acked", func() bool { a, _ := rec.results(); return a == 3 })
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(order) != "[1 2 3]" {
				t.Fatalf("updates finished in the order %v, want [1 2 3]", order)
			}
			if got := stored(t, srvDSN); got[7] != 3 {
				t.Fatalf("key 7 holds %d, want 3", got[7])
			}
			if n := st.Stats().Panics; n != 0 {
				t.Fatalf("the handler panicked %d times", n)
			}
		})
	}
}

// conflict: update needs a key; version needs conflict: update, a column
// outside the key, and an integer type: one given in types that is none
// is refused as the stage is built (so lint reports it, before create
// makes the table with it), and at Start one the table has.
func TestUpsertConfig(t *testing.T) {
	for _, c := range []struct {
		over  map[string]any
		field string
		msg   string
	}{
		{map[string]any{"key": nil}, "conflict", "update needs key"},
		{map[string]any{"conflict": "ignore", "version": "seq"}, "version", "version is for conflict: update"},
		{map[string]any{"version": "id"}, "version", `column "id" is in the key`},
		{map[string]any{"version": "nope"}, "version", `column "nope" is not in columns`},
		{map[string]any{"version": "seq", "types": [][2]string{{"seq", "text"}}}, "version",
			`column "seq" is text in types: it needs an integer type`},
		{map[string]any{"version": "seq", "types": [][2]string{{"seq", " Timestamp(3)  with time zone"}}}, "version",
			`it needs an integer type`},
		{map[string]any{"version": "seq", "types": [][2]string{{"seq", "pg_catalog.numeric(10, 0)"}}}, "version",
			`it needs an integer type`},
		{map[string]any{"version": "seq", "types": [][2]string{{"seq", "bigint[]"}}}, "version",
			`it needs an integer type`},
		// The whole record is never an integer: before, build and lint
		// passed and Start failed.
		{map[string]any{"version": "body"}, "version",
			`column "body" is the whole record ($), not an integer: version needs a column of an integer field`},
		{map[string]any{"version": "body", "types": [][2]string{{"id", "bigint"}, {"body", "bigint"}}}, "version",
			`column "body" is the whole record ($)`},
	} {
		_, err := build(upsertConfig("postgres://localhost/x", c.over), stage.Env{Stage: "store"})
		var fe *stage.FieldError
		if err == nil || !strings.Contains(err.Error(), c.msg) || !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%v: %v, want field %s saying %q", c.over, err, c.field, c.msg)
		}
	}
	for _, typ := range []string{"INTEGER", "int8", "pg_catalog.int2", "bigserial", "counter"} { // counter: a domain, perhaps
		if _, err := build(upsertConfig("postgres://localhost/x", map[string]any{"version": "seq",
			"types": [][2]string{{"id", "bigint"}, {"seq", typ}}}), stage.Env{Stage: "store"}); err != nil {
			t.Errorf("version typed %s: %v", typ, err)
		}
	}
	dsn := pg.NewDatabase(t)
	exec(t, connect(t, dsn), "CREATE TABLE events (id bigint PRIMARY KEY, seq text, body jsonb)")
	s := newSink(t, upsertConfig(dsn, map[string]any{"version": "seq", "create": false, "types": nil}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), `version column "seq" is text: it needs an integer type`) {
		t.Fatalf("Start: %v", err)
	}
}

// TestUpsertCreatesVersionAsInteger: create makes a version column that
// types leaves untyped bigint, as versions are compared, so that such a
// stage starts and its versions work. Before, create made it text: lint
// passed, and Start failed on the table it had just made.
func TestUpsertCreatesVersionAsInteger(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, upsertConfig(dsn, map[string]any{"method": method, "version": "seq",
				"types": [][2]string{{"id", "bigint"}}}))
			db := connect(t, dsn)
			var typ string
			if err := db.QueryRow(context.Background(), "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'seq'").Scan(&typ); err != nil {
				t.Fatal(err)
			}
			if typ != "bigint" {
				t.Fatalf("create made seq %s, want bigint", typ)
			}
			rec := &recorder{}
			for _, seq := range []int{5, 3, 7, 6} { // 3 and 6 come late: older than what is stored
				ev := update(rec, 1, seq)
				withSeq(ev, seq)
				handle(t, s, []*stage.Event{ev})
			}
			if acked, nacked := rec.results(); acked != 4 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			if got := stored(t, dsn); len(got) != 1 || got[1] != 7 {
				t.Fatalf("stored %v, want key 1 at seq 7", got)
			}
		})
	}
}

// The load table is made once per connection and kept: across writes and
// across a write that PostgreSQL refused (rolled back, then bisected), the
// one connection keeps writing through the same table, emptied at each
// commit.
func TestUpsertLoadTableKept(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "version": "seq", "max_conns": 1}))
	db := connect(t, dsn)
	loadOID := func() (oid uint32) {
		t.Helper()
		var n int
		err := db.QueryRow(context.Background(),
			"SELECT count(*), coalesce(min(oid::int8), 0) FROM pg_class WHERE relname = $1", s.lay.Load().loadName).Scan(&n, &oid)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d load tables, want the one connection's", n)
		}
		return oid
	}
	rec := &recorder{}
	mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
	handle(t, s, []*stage.Event{mk(1, 1), mk(2, 1)})
	first := loadOID()
	if _, err := db.Exec(context.Background(), "ALTER TABLE events ADD CHECK (seq < 100)"); err != nil {
		t.Fatal(err)
	}
	handle(t, s, []*stage.Event{mk(1, 2), mk(2, 100), mk(3, 1)}) // 2:100 refused
	handle(t, s, []*stage.Event{mk(1, 3), mk(3, 2)})
	if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(map[int64]int64{1: 3, 2: 1, 3: 2}) {
		t.Fatalf("stored %v, want 1:3 2:1 3:2", got)
	}
	if acked, nacked := rec.results(); acked != 6 || len(nacked) != 1 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if oid := loadOID(); oid != first {
		t.Fatalf("load table %d, then %d: made again", first, oid)
	}
}

// When a connection's load table goes missing (as behind a pooler in
// transaction mode), the write that meets it is not lost: from then on
// each write makes the table in its own transaction, also on a connection
// that still holds one.
func TestUpsertLoadTableMissing(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "max_conns": 1}))
	exec := func(sql string) {
		t.Helper()
		ctx := context.Background()
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
	handle(t, s, []*stage.Event{mk(1, 1), mk(2, 1)})
	exec("DROP TABLE " + s.lay.Load().loadName)
	handle(t, s, []*stage.Event{mk(1, 2)})
	if !s.loadPerTx.Load() {
		t.Fatal("the load table went missing, and writes still expect it")
	}
	exec("CREATE TEMP TABLE " + s.lay.Load().loadName + " (LIKE events)") // a connection that still holds one
	handle(t, s, []*stage.Event{mk(2, 2), mk(3, 1)})
	if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(map[int64]int64{1: 2, 2: 2, 3: 1}) {
		t.Fatalf("stored %v, want 1:2 2:2 3:1", got)
	}
	if acked, nacked := rec.results(); acked != 5 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
}

// Behind a pooler in transaction mode a connection's first CREATE of the
// load table can run in a server session that still holds one from an
// earlier client (42P07). That write is made again with a load table of
// its own transaction, and so is every later one: before, the batch failed
// whole, the connection never noted a load table, and each later write on
// it failed the same way. The session is played by a pooled connection
// that holds a _seda_load it did not make.
func TestUpsertLoadTableLeftByAnotherSession(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "max_conns": 1}))
	ctx := context.Background()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Conn().PgConn().CustomData()[s.lay.Load().loadName] != nil {
		t.Fatal("the connection holds a load table before any write")
	}
	_, err = c.Exec(ctx, "CREATE TEMP TABLE "+s.lay.Load().loadName+" (LIKE events)")
	c.Release()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
	handle(t, s, []*stage.Event{mk(1, 1), mk(2, 1)})
	handle(t, s, []*stage.Event{mk(2, 2), mk(3, 1)})
	if !s.loadPerTx.Load() {
		t.Fatal("the load table was another session's, and writes still make one per connection")
	}
	if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(map[int64]int64{1: 1, 2: 2, 3: 1}) {
		t.Fatalf("stored %v, want 1:1 2:2 3:1", got)
	}
	if acked, nacked := rec.results(); acked != 4 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
}

// A write that began with the connection's load table, and found it
// missing after another worker had switched every write to a load table
// of its own transaction, is made again so: before, it saw the mode
// already switched, and failed the batch with the 42P01.
func TestUpsertLoadTableMissingAfterSwitch(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "max_conns": 1}))
	rec := &recorder{}
	mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
	handle(t, s, []*stage.Event{mk(1, 1)}) // the connection makes its load table
	ctx := context.Background()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "DROP TABLE "+s.lay.Load().loadName)
	c.Release()
	if err != nil {
		t.Fatal(err)
	}
	// Another worker's write switches the mode while this one is under
	// way with the connection's table.
	testBeforeLoad = func(s *Sink) { s.loadPerTx.Store(true) }
	t.Cleanup(func() { testBeforeLoad = nil })
	handle(t, s, []*stage.Event{mk(1, 2), mk(2, 1)})
	if got := stored(t, dsn); fmt.Sprint(got) != fmt.Sprint(map[int64]int64{1: 2, 2: 1}) {
		t.Fatalf("stored %v, want 1:2 2:1", got)
	}
	if acked, nacked := rec.results(); acked != 3 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
}

// With method insert a NULL key part and a long text are told apart where
// NULLs are equal (NULLS NOT DISTINCT): the key bytes of (NULL, "x", C)
// were those of (A, "b", "c") for a 255-byte A whose length's varint
// began with the NULL's byte and whose bytes went on as the rest of the
// other key, so one row superseded a row of another key.
func TestUpsertNullKeyPartIsNoLength(t *testing.T) {
	s := &Sink{insert: true, update: true, nullsEqual: true, version: -1, isKey: []bool{true, true, true}, cols: []column{
		{name: "a", path: "a", kind: kindText},
		{name: "b", path: "b", kind: kindText},
		{name: "c", path: "c", kind: kindText},
	}}
	a := "x\x80\x02" + strings.Repeat("y", 252) // 255 bytes: its length is 0xff 0x01
	x := src.NewEvent([]byte(`{}`), 1, stage.Origin{})
	x.Set("b", "x")
	x.Set("c", a[3:]+"\x01b\x01c") // 256 bytes: 0x80 0x02
	y := src.NewEvent([]byte(`{}`), 2, stage.Origin{})
	y.Set("a", a)
	y.Set("b", "b")
	y.Set("c", "c")
	r := &rows{}
	r.reset(&layout{cols: s.cols, sortCol: -1}, true)
	for _, ev := range []*stage.Event{x, y} {
		if err := s.addRow(r, ev); err != nil {
			t.Fatal(err)
		}
	}
	var d dedup
	if d.add(r, 0, 2, false); len(d.win) != 2 {
		t.Fatalf("%d rows picked of 2 of different keys", len(d.win))
	}
}

// Behind a pooler in transaction mode a server session may hold the load
// table of another stage, one writing another table through the same
// database. Each stage's load table has a name of its own (of its
// columns and table), so a write never COPYs into another's: with one
// name for all, the write met the other's columns, and its records were
// refused one by one (binary bigints read as text), or its batches failed
// whole (a column missing), or were retried for ever (08P01: a bigint
// read as a uuid). The session is played by a pooled connection of this
// stage holding the other stage's load table instead of its own.
func TestUpsertLoadTableOfAnotherStage(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "max_conns": 1}))
	other := startSink(t, upsertConfig(dsn, map[string]any{"method": "copy", "max_conns": 1, "table": "logs",
		"types": [][2]string{{"id", "uuid"}, {"seq", "bigint"}}}))
	if s.lay.Load().loadName == other.lay.Load().loadName {
		t.Fatalf("two stages writing two tables share the load table %s", s.lay.Load().loadName)
	}
	rec := &recorder{}
	mk := func(id, seq int) *stage.Event { ev := update(rec, id, seq); withSeq(ev, seq); return ev }
	handle(t, s, []*stage.Event{mk(1, 1)}) // the connection makes its load table
	ctx := context.Background()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "DROP TABLE "+s.lay.Load().loadName+"; CREATE TEMP TABLE "+other.lay.Load().loadName+
		" ON COMMIT DELETE ROWS AS SELECT gen_random_uuid() AS id, 1::bigint AS seq, '{}'::jsonb AS body WITH NO DATA")
	c.Release()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a stuck write fails the test, not the suite
		err := s.Handle(hctx, []*stage.Event{mk(10+round, 1), mk(20+round, 1), mk(30+round, 1)}, nil)
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if acked, nacked := rec.results(); acked != 7 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v; want 7 acked", acked, nacked)
	}
	if got := stored(t, dsn); len(got) != 7 {
		t.Fatalf("stored %v, want 7 rows", got)
	}
}
