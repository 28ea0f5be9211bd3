package db

// This file tests db.postgres on a real PostgreSQL: the table made or
// checked, acks after commit, conflict, refused rows isolated, the server
// away; and holds the test rig the package's other tests use.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
)

var pg = pgtesting.Cluster{Options: pgtemp.Options{Fast: true}}

func TestMain(m *testing.M) { goleak.VerifyTestMain(pg.Wrap(m)) }

// recorder is the Origin.To of the test events: it keeps each event's
// result and may run a hook at each completion.
type recorder struct {
	mu   sync.Mutex
	errs map[uint64]error
	hook func(ev *stage.Event, err error)
}

func (r *recorder) Complete(ev *stage.Event, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = map[uint64]error{}
	}
	if _, dup := r.errs[ev.Seq]; dup {
		panic(fmt.Sprintf("event %d completed twice", ev.Seq))
	}
	r.errs[ev.Seq] = err
	if r.hook != nil {
		r.hook(ev, err)
	}
}

// results returns how many events were acked and the nacked ones by seq.
func (r *recorder) results() (acked int, nacked map[uint64]error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nacked = map[uint64]error{}
	for seq, err := range r.errs {
		if err == nil {
			acked++
		} else {
			nacked[seq] = err
		}
	}
	return acked, nacked
}

var src, _ = engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)

// record makes one event with seq, field id and payload {"id":id,...}.
func record(rec *recorder, seq uint64, id any, extra map[string]any) *stage.Event {
	return recordOn(src, rec, seq, id, extra)
}

// recordOn is record made by st, a source stage: an event emitted through
// a stage's emitter must be one that stage holds.
func recordOn(st *engine.Stage, rec *recorder, seq uint64, id any, extra map[string]any) *stage.Event {
	fields := map[string]any{"id": id}
	for k, v := range extra {
		fields[k] = v
	}
	payload, _ := json.Marshal(map[string]any{"id": id, "msg": "hello from the test suite", "n": seq})
	ev := st.NewEvent(payload, seq, stage.Origin{To: rec, Key: 1})
	for k, v := range fields {
		ev.Set(k, v)
	}
	return ev
}

// batchOf makes events with ids from..to-1 (seq = id).
func batchOf(rec *recorder, from, to int) []*stage.Event {
	var b []*stage.Event
	for id := from; id < to; id++ {
		b = append(b, record(rec, uint64(id), json.Number(fmt.Sprint(id)), nil))
	}
	return b
}

// config returns the default test configuration with overrides; a nil
// override removes the key.
func config(dsn string, over map[string]any) stage.Config {
	v := map[string]any{
		"dsn":     dsn,
		"table":   "events",
		"create":  true,
		"columns": [][2]string{{"id", "id"}, {"body", "$"}},
		"types":   [][2]string{{"id", "bigint"}},
		"key":     []string{"id"},
		"retry": stage.NewConfig(map[string]any{
			"backoff": 10 * time.Millisecond, "max_backoff": 200 * time.Millisecond,
		}),
	}
	for k, x := range over {
		if x == nil {
			delete(v, k)
		} else {
			v[k] = x
		}
	}
	return stage.NewConfig(v)
}

// build binds cfg to the kind's spec, as the pipeline does, and calls New.
func build(cfg stage.Config, env stage.Env) (*Sink, error) {
	bound, err := stage.Bind(Fields(), cfg)
	if err != nil {
		return nil, err
	}
	return New(bound, env)
}

func newSink(t *testing.T, cfg stage.Config, log *zap.Logger) *Sink {
	t.Helper()
	s, err := build(cfg, stage.Env{Stage: "store", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func startSink(t *testing.T, cfg stage.Config) *Sink {
	t.Helper()
	s := newSink(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func count(t *testing.T, c *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func handle(t *testing.T, s *Sink, batch []*stage.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Handle(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	for _, ev := range batch {
		if !ev.Finished() {
			t.Fatalf("event %d not finished after Handle", ev.Seq)
		}
	}
}

var methods = []string{"copy", "insert"}

func exec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

func TestCreateThenReuseExistingTable(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, "CREATE SCHEMA app")
	cfg := config(dsn, map[string]any{"table": "app.Events"})

	s1 := startSink(t, cfg)
	rec := &recorder{}
	handle(t, s1, batchOf(rec, 0, 10))
	_ = s1.Close()
	var types []string
	rows, _ := db.Query(context.Background(), `SELECT column_name || ' ' || data_type FROM information_schema.columns
		WHERE table_schema = 'app' AND table_name = 'events' ORDER BY ordinal_position`)
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types, ", "); got != "id bigint, body jsonb" {
		t.Fatalf("created columns: %s", got)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_index WHERE indrelid = 'app.events'::regclass AND indisprimary"); n != 1 {
		t.Fatalf("%d primary keys", n)
	}

	s2 := startSink(t, cfg) // the table exists now: used as it is
	handle(t, s2, batchOf(rec, 10, 20))
	if acked, nacked := rec.results(); acked != 20 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if n := count(t, db, "SELECT count(*) FROM app.events"); n != 20 {
		t.Fatalf("%d rows, want 20", n)
	}
}

// An existing table with more columns than configured, a json (not jsonb)
// body and a NOT NULL column left to its default is used as it is, on
// both paths of conflict: ignore.
func TestExistingTableWithExtraColumns(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, `CREATE TABLE events (id bigint PRIMARY KEY, body json,
				created timestamptz NOT NULL DEFAULT now(), note text)`)
			s := startSink(t, config(dsn, map[string]any{"conflict": "ignore", "method": method}))
			handle(t, s, batchOf(&recorder{}, 0, 10))
			rec := &recorder{}
			handle(t, s, batchOf(rec, 5, 15)) // 5..9 again
			if acked, _ := rec.results(); acked != 10 {
				t.Fatalf("acked %d of 10", acked)
			}
			if n := count(t, db, "SELECT count(*) FROM events WHERE created IS NOT NULL AND body->>'msg' <> ''"); n != 15 {
				t.Fatalf("%d rows, want 15", n)
			}
		})
	}
}

// The key's index must be one ON CONFLICT (key) can use. A DEFERRABLE
// primary key, and a unique index whose INCLUDE columns made up the key,
// passed the check at start and then failed every write that used the
// key; a unique index with INCLUDE columns on exactly the key was
// refused.
func TestKeyIndexOnConflictCanUse(t *testing.T) {
	cases := []struct {
		name, ddl string
		key       []string
		want      string // Start's error; "" when the writes are to work
	}{
		{"deferrable", "CREATE TABLE events (id bigint PRIMARY KEY DEFERRABLE, body jsonb)", []string{"id"},
			"the unique constraint on the key (id) is DEFERRABLE: ON CONFLICT needs one checked at once"},
		{"include in the key", "CREATE TABLE events (id bigint, body jsonb, UNIQUE (id) INCLUDE (body))", []string{"id", "body"},
			"no primary key or unique index on the key (id, body)"},
		{"include after the key", "CREATE TABLE events (id bigint, body jsonb, UNIQUE (id) INCLUDE (body))", []string{"id"}, ""},
		// conflict: error writes no ON CONFLICT: a deferrable key is fine.
		{"deferrable, conflict error", "CREATE TABLE events (id bigint PRIMARY KEY DEFERRABLE, body jsonb)", []string{"id"}, ""},
	}
	for _, c := range cases {
		conflicts := []string{"ignore", "update"}
		if strings.HasSuffix(c.name, "conflict error") {
			conflicts = []string{"error"}
		}
		for _, conflict := range conflicts {
			t.Run(c.name+"/"+conflict, func(t *testing.T) {
				dsn := pg.NewDatabase(t)
				db := connect(t, dsn)
				exec(t, db, c.ddl)
				s := newSink(t, config(dsn, map[string]any{"create": false, "conflict": conflict, "key": c.key}), nil)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := s.Start(ctx)
				if c.want != "" {
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("Start: %v, want an error saying %q", err, c.want)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				recs := []*recorder{{}, {}} // the second time, the conflict path
				if conflict == "error" {
					recs = recs[:1]
				}
				for _, rec := range recs {
					handle(t, s, batchOf(rec, 1, 3))
					if acked, nacked := rec.results(); acked != 2 {
						t.Errorf("acked %d of 2, nacked %v", acked, nacked)
					}
				}
				if n := count(t, db, "SELECT count(*) FROM events"); n != 2 {
					t.Errorf("%d rows, want 2", n)
				}
			})
		}
	}
}

// A table named as the sink's own temporary table works when its schema
// is given (the bare name is refused by New: TestNewChecksConfig), on
// both paths of conflict: ignore, the second of which goes through the
// temporary table.
func TestTableNamedAsTheLoadTable(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	s := startSink(t, config(dsn, map[string]any{"table": "public." + loadTable, "conflict": "ignore"}))
	for _, rec := range []*recorder{{}, {}} {
		handle(t, s, batchOf(rec, 10, 13))
		if acked, nacked := rec.results(); acked != 3 {
			t.Fatalf("acked %d of 3, nacked %v", acked, nacked)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM public."+loadTable); n != 3 {
		t.Fatalf("%d rows in public.%s, want 3", n, loadTable)
	}
}

func TestTableMismatch(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, "CREATE TABLE events (id text, body jsonb)")
	exec(t, db, "CREATE TABLE ints (id bigint PRIMARY KEY, body integer)")

	cases := []struct {
		name string
		over map[string]any
		want []string
	}{
		{"wrong type and no key", nil, []string{
			`table "events" does not match the configuration`,
			`column "id" is text, want bigint`, `no primary key or unique index on the key (id)`}},
		{"missing column", map[string]any{
			"columns": [][2]string{{"id", "id"}, {"body", "$"}, {"extra", "x"}},
			"types":   [][2]string{{"id", "text"}, {"body", "JSONB"}}, "key": nil},
			[]string{`column "extra" is missing`}},
		{"record in an integer", map[string]any{"table": "ints", "types": nil},
			[]string{`column "body" is integer: the whole record ($) needs jsonb, json or a text type`}},
		{"typmod differs", map[string]any{"table": "ints", "columns": [][2]string{{"id", "id"}, {"body", "b"}},
			"types": [][2]string{{"id", "int8"}, {"body", "numeric(5,2)"}}},
			[]string{`column "body" is integer, want numeric(5,2)`}},
		{"no table", map[string]any{"table": "nothere", "create": false},
			[]string{`table "nothere" does not exist: create it, or set create: true`}},
		{"unknown type", map[string]any{"types": [][2]string{{"id", "bigintt"}}},
			[]string{`types: ERROR: type "bigintt" does not exist (SQLSTATE 42704)`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSink(t, config(dsn, c.over), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := s.Start(ctx) // on_start: retry, but these are not retried
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("Start retried until its context ended: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// Done(nil) comes only after the commit: when the first event is acked,
// every row of the batch is visible to another session.
func TestAckAfterCommit(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, config(dsn, map[string]any{"method": method}))
			db := connect(t, dsn)
			seen := -1
			rec := &recorder{hook: func(ev *stage.Event, err error) {
				if seen < 0 {
					seen = count(t, db, "SELECT count(*) FROM events")
				}
			}}
			handle(t, s, batchOf(rec, 0, 100))
			if seen != 100 {
				t.Fatalf("rows visible at the first ack: %d, want 100", seen)
			}
			if acked, nacked := rec.results(); acked != 100 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			if n := count(t, db, "SELECT count(*) FROM events WHERE body->>'id' = id::text"); n != 100 {
				t.Fatalf("%d rows with their record, want 100", n)
			}
		})
	}
}

func TestConflictIgnore(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, config(dsn, map[string]any{"method": method, "conflict": "ignore"}))
			db := connect(t, dsn)
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 50))
			if s.idemWrites.Load() != 0 {
				t.Fatal("a batch with no duplicate took the idempotent path")
			}
			rec2, rec3, rec4 := &recorder{}, &recorder{}, &recorder{}
			handle(t, s, batchOf(rec2, 0, 50)) // the same batch again: a resend
			handle(t, s, batchOf(rec3, 25, 75))
			dup := append(batchOf(rec4, 100, 101), batchOf(rec4, 100, 101)...) // twice in one batch
			dup[1].Seq = 1000
			handle(t, s, dup)
			for i, r := range []*recorder{rec, rec2, rec3, rec4} {
				if acked, nacked := r.results(); acked != []int{50, 50, 50, 2}[i] || len(nacked) != 0 {
					t.Fatalf("batch %d: acked %d, nacked %v", i, acked, nacked)
				}
			}
			if n := count(t, db, "SELECT count(*) FROM events"); n != 76 {
				t.Fatalf("%d rows, want 76", n)
			}
			if method == "copy" && s.idemWrites.Load() != 3 {
				t.Fatalf("%d batches took the idempotent path, want 3", s.idemWrites.Load())
			}
		})
	}
}

func TestConflictErrorNacksDuplicates(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, config(dsn, map[string]any{"method": method, "conflict": "error"}))
			db := connect(t, dsn)
			handle(t, s, batchOf(&recorder{}, 0, 10))
			rec := &recorder{}
			handle(t, s, batchOf(rec, 5, 40))
			acked, nacked := rec.results()
			if acked != 30 || len(nacked) != 5 {
				t.Fatalf("acked %d, nacked %d, want 30 and 5", acked, len(nacked))
			}
			for seq, err := range nacked {
				var pe *pgconn.PgError
				if seq < 5 || seq >= 10 || !errors.As(err, &pe) || pe.Code != "23505" ||
					!strings.Contains(err.Error(), `stage "store": record `) {
					t.Errorf("event %d nacked with %v", seq, err)
				}
			}
			if n := count(t, db, "SELECT count(*) FROM events"); n != 40 {
				t.Fatalf("%d rows, want 40", n)
			}
		})
	}
}

// A column's length is the column's to check, with either method: a
// value that fits is stored as it is, one too long (or a bit string of
// another length) is refused, as COPY refuses it. The insert method's
// casts once named the type as format_type writes it, and a cast to
// "character" or "bit" is char(1) or bit(1): it cut values short and
// acked them.
func TestLengthsAreTheColumnsOwn(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, code char(5), tag varchar(3), flags bit(4), names char(3)[], body jsonb)")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method,
				"columns": [][2]string{{"id", "id"}, {"code", "code"}, {"tag", "tag"}, {"flags", "flags"}, {"names", "names"}, {"body", "$"}}}))
			fits := map[string]any{"code": "abcde", "tag": "abc", "flags": "1010", "names": "{abc,de}"}
			rec := &recorder{}
			batch := []*stage.Event{record(rec, 1, 1, fits)}
			for i, bad := range []map[string]any{{"code": "abcdefgh"}, {"tag": "abcd"}, {"flags": "101"}, {"names": "{abcd}"}} {
				fields := maps.Clone(fits)
				maps.Copy(fields, bad)
				batch = append(batch, record(rec, uint64(i+2), i+2, fields))
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 1 || len(nacked) != 4 {
				t.Fatalf("acked %d, nacked %v; want 1 acked, records 2-5 nacked", acked, nacked)
			}
			for seq, err := range nacked {
				if stage.ErrorClass(err) != "database" {
					t.Errorf("record %d nacked with %v, want a row PostgreSQL refuses", seq, err)
				}
			}
			var code, tag, flags, names string
			if err := db.QueryRow(context.Background(), "SELECT code, tag, flags::text, names::text FROM events WHERE id = 1").
				Scan(&code, &tag, &flags, &names); err != nil {
				t.Fatal(err)
			}
			if code != "abcde" || tag != "abc" || flags != "1010" || names != `{abc,"de "}` {
				t.Errorf("stored %q %q %q %q, want %q %q %q %q", code, tag, flags, names, "abcde", "abc", "1010", `{abc,"de "}`)
			}
			if n := count(t, db, "SELECT count(*) FROM events"); n != 1 {
				t.Errorf("%d rows stored, want 1", n)
			}
		})
	}
}

// Rows PostgreSQL refuses outside classes 22 and 23 are found by
// bisection too, and only they are nacked: a JSON document nested too
// deeply for its parser (54001, stack depth limit exceeded) and a row a
// trigger raises an exception for (P0001). Before, either failed the
// whole batch, and its good rows again on every resend.
func TestDeepValueAndTriggerRefuseTheirRowOnly(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, code text, body jsonb)")
			exec(t, db, `CREATE FUNCTION no_reject() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.code = 'reject' THEN RAISE EXCEPTION 'code reject refused'; END IF; RETURN NEW; END $$`)
			exec(t, db, "CREATE TRIGGER no_reject BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION no_reject()")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method,
				"columns": [][2]string{{"id", "id"}, {"code", "code"}, {"body", "$"}}}))
			rec := &recorder{}
			var batch []*stage.Event
			for i := range 6 {
				var ev *stage.Event
				switch i {
				case 2: // the record itself is the body
					deep := strings.Repeat("[", 50000) + strings.Repeat("]", 50000)
					ev = src.NewEvent([]byte(deep), uint64(i), stage.Origin{To: rec, Key: 1})
					ev.Set("id", i)
					ev.Set("code", "ok")
				case 4:
					ev = record(rec, uint64(i), i, map[string]any{"code": "reject"})
				default:
					ev = record(rec, uint64(i), i, map[string]any{"code": "ok"})
				}
				batch = append(batch, ev)
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 4 || len(nacked) != 2 {
				t.Fatalf("acked %d, nacked %v; want records 2 and 4 nacked, the rest acked", acked, nacked)
			}
			for seq, want := range map[uint64]string{2: "(SQLSTATE 54001)", 4: "code reject refused (SQLSTATE P0001)"} {
				if err := nacked[seq]; err == nil || !strings.Contains(err.Error(), want) ||
					!strings.Contains(err.Error(), fmt.Sprintf(`stage "store": record %d refused`, seq)) || stage.ErrorClass(err) != "database" {
					t.Errorf("record %d nacked with %v, want a refused row (%s)", seq, err, want)
				}
			}
			if n := count(t, db, "SELECT count(*) FROM events WHERE id IN (0, 1, 3, 5)"); n != 4 {
				t.Errorf("%d of the four good rows stored", n)
			}
		})
	}
}

// threeWithBadMiddle handles records 1, 2 and 3 with codes ok, bad and
// ok, and checks that only record 2 is nacked, as refused with want in
// its reason, and that records 1 and 3 are stored and acked.
func threeWithBadMiddle(t *testing.T, s *Sink, db *pgx.Conn, bad, want string) {
	t.Helper()
	rec := &recorder{}
	var batch []*stage.Event
	for i, code := range []string{"ok", bad, "ok"} {
		batch = append(batch, record(rec, uint64(i+1), i+1, map[string]any{"code": code}))
	}
	handle(t, s, batch)
	acked, nacked := rec.results()
	if err := nacked[2]; acked != 2 || len(nacked) != 1 || err == nil ||
		!strings.Contains(err.Error(), `stage "store": record 2 refused`) || !strings.Contains(err.Error(), want) {
		t.Fatalf("acked %d, nacked %v; want record 2 nacked as refused (%s), 1 and 3 acked", acked, nacked, want)
	}
	if n := count(t, db, "SELECT count(*) FROM events WHERE id IN (1, 3)"); n != 2 {
		t.Fatalf("%d of the two good rows stored", n)
	}
}

// A trigger's other exceptions refuse their row only too: SELECT INTO
// STRICT finding no row (P0002) and a code of the trigger's own (U0001, a
// class PostgreSQL does not define). Before, only P0001 was bisected, and
// these failed the whole batch with one reason naming no record.
func TestTriggerErrorsRefuseTheirRowOnly(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, code text, body jsonb)")
			exec(t, db, "CREATE TABLE codes (code text PRIMARY KEY); INSERT INTO codes VALUES ('ok'), ('custom')")
			exec(t, db, `CREATE FUNCTION check_code() RETURNS trigger LANGUAGE plpgsql AS $$
				DECLARE c text;
				BEGIN
					SELECT code INTO STRICT c FROM codes WHERE code = NEW.code;
					IF c = 'custom' THEN RAISE EXCEPTION 'custom code refused' USING ERRCODE = 'U0001'; END IF;
					RETURN NEW;
				END $$`)
			exec(t, db, "CREATE TRIGGER check_code BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION check_code()")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method,
				"columns": [][2]string{{"id", "id"}, {"code", "code"}, {"body", "$"}}}))
			for bad, want := range map[string]string{"unknown": "(SQLSTATE P0002)", "custom": "custom code refused (SQLSTATE U0001)"} {
				exec(t, db, "TRUNCATE events")
				threeWithBadMiddle(t, s, db, bad, want)
			}
		})
	}
}

// A row a row-level security policy's WITH CHECK refuses (42501, as a
// permission is) is refused alone, for a role the policy applies to.
// Before, the batch failed whole. PostgreSQL runs no COPY into such a
// table, so method copy is tried with an upsert (through the load table).
func TestRowSecurityRefusesItsRowOnly(t *testing.T) {
	s, admin, dsn, _ := roleSink(t, "")
	exec(t, admin, "DROP TABLE events")
	exec(t, admin, "CREATE TABLE events (id bigint PRIMARY KEY, code text, body jsonb)")
	var role string
	if err := admin.QueryRow(context.Background(), "SELECT 'w_' || current_database()").Scan(&role); err != nil {
		t.Fatal(err)
	}
	exec(t, admin, "GRANT ALL ON events TO "+role)
	exec(t, admin, "ALTER TABLE events ENABLE ROW LEVEL SECURITY")
	exec(t, admin, "CREATE POLICY no_bad ON events USING (true) WITH CHECK (code <> 'bad')")
	_ = s.Close()
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			conflict := "error"
			if method == "copy" {
				conflict = "update"
			}
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method, "conflict": conflict,
				"columns": [][2]string{{"id", "id"}, {"code", "code"}, {"body", "$"}}}))
			exec(t, admin, "TRUNCATE events")
			threeWithBadMiddle(t, s, admin, "bad", "new row violates row-level security policy for table \"events\" (SQLSTATE 42501)")
		})
	}
}

// TestRowSecurityRefusesCopyAtStart: PostgreSQL refuses COPY FROM into a
// table whose row-level security applies to the role, so method copy
// (without conflict: update, whose COPY goes into the load table) fails
// Start at once, saying to set method: insert; before, Start passed and
// every batch failed with 0A000. Method insert starts and writes there.
// Row-level security does not apply to the table's owner unless it is
// FORCE ROW LEVEL SECURITY, and method copy starts and writes for one.
func TestRowSecurityRefusesCopyAtStart(t *testing.T) {
	dsn := pg.NewDatabase(t)
	admin := connect(t, dsn)
	role, roleDSN := newRole(t, admin, dsn, "s_")
	exec(t, admin, "CREATE TABLE events (id bigint PRIMARY KEY, body jsonb)")
	exec(t, admin, "GRANT ALL ON events TO "+role)
	exec(t, admin, "ALTER TABLE events ENABLE ROW LEVEL SECURITY")
	exec(t, admin, "CREATE POLICY all_rows ON events USING (true) WITH CHECK (true)")
	start := func(over map[string]any) (*Sink, error) {
		t.Helper()
		over["create"] = false
		s := newSink(t, config(roleDSN, over), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var retried error
		health := healthFunc(func(err error) {
			if err != nil && retried == nil {
				retried = err
				cancel()
			}
		})
		err := s.Start(context.WithValue(ctx, track.HealthKey{}, health))
		if retried != nil {
			t.Fatalf("Start retried: %v", retried)
		}
		return s, err
	}
	refused := func(what string, over map[string]any) {
		t.Helper()
		_, err := start(over)
		if err == nil || !strings.Contains(err.Error(), `table "events" has row-level security`) ||
			!strings.Contains(err.Error(), "set method: insert") {
			t.Fatalf("%s: Start returned %v, want it refused for row-level security, saying to set method: insert", what, err)
		}
	}
	writes := func(what string, over map[string]any, from int) {
		t.Helper()
		s, err := start(over)
		if err != nil {
			t.Fatalf("%s: Start: %v", what, err)
		}
		rec := &recorder{}
		handle(t, s, batchOf(rec, from, from+10))
		if acked, nacked := rec.results(); acked != 10 || len(nacked) != 0 {
			t.Fatalf("%s: acked %d, nacked %v; want 10 acked", what, acked, nacked)
		}
		if n := count(t, admin, "SELECT count(*) FROM events WHERE id >= $1 AND id < $2", from, from+10); n != 10 {
			t.Fatalf("%s: %d rows stored, want 10", what, n)
		}
	}
	refused("copy", map[string]any{"method": "copy"})
	refused("copy, conflict: ignore", map[string]any{"method": "copy", "conflict": "ignore"})
	writes("insert", map[string]any{"method": "insert"}, 0)

	exec(t, admin, "ALTER TABLE events OWNER TO "+role)
	writes("copy by the owner", map[string]any{"method": "copy"}, 10)
	exec(t, admin, "ALTER TABLE events FORCE ROW LEVEL SECURITY")
	refused("copy by the owner, FORCE ROW LEVEL SECURITY", map[string]any{"method": "copy"})
}

// TestViewCheckOptionRefusesItsRowOnly: written through a view with WITH
// CHECK OPTION (method insert; PostgreSQL runs no COPY into a view, and
// method copy is refused at Start), a row outside the view is refused
// (44000) alone, with PostgreSQL's message, and the others are stored.
// Before, the batch failed whole with one reason naming no record.
func TestViewCheckOptionRefusesItsRowOnly(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, code text, body jsonb)")
	exec(t, db, "CREATE VIEW ok_events AS SELECT * FROM events WHERE code <> 'bad' WITH CHECK OPTION")
	s := startSink(t, config(dsn, map[string]any{"create": false, "method": "insert", "table": "ok_events", "key": nil,
		"columns": [][2]string{{"id", "id"}, {"code", "code"}, {"body", "$"}}}))
	rec := &recorder{}
	bad := map[uint64]bool{3: true, 50: true, 99: true}
	var batch []*stage.Event
	for i := range 100 {
		code := "ok"
		if bad[uint64(i)] {
			code = "bad"
		}
		batch = append(batch, record(rec, uint64(i), i, map[string]any{"code": code}))
	}
	handle(t, s, batch)
	acked, nacked := rec.results()
	if acked != 97 || len(nacked) != 3 {
		t.Fatalf("acked %d, nacked %v; want the 3 outside the view nacked", acked, nacked)
	}
	for seq, err := range nacked {
		want := fmt.Sprintf(`stage "store": record %d refused: ERROR: new row violates check option for view "ok_events"`, seq)
		if !bad[seq] || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "(SQLSTATE 44000)") {
			t.Errorf("record %d nacked with %v; want only 3, 50 and 99, refused by the view's check", seq, err)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM events WHERE code = 'ok'"); n != 97 {
		t.Fatalf("%d rows stored, want 97", n)
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 97 {
		t.Fatalf("%d rows in the table, want the 97 inside the view", n)
	}
}

// One row PostgreSQL refuses, and one value that cannot convert, in a
// batch of 100: only those two are nacked.
func TestBadRowsAreIsolated(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, config(dsn, map[string]any{
				"method":  method,
				"columns": [][2]string{{"id", "id"}, {"code", "attrs.code"}, {"body", "$"}},
				"types":   [][2]string{{"id", "bigint"}, {"code", "varchar(5)"}},
			}))
			db := connect(t, dsn)
			rec := &recorder{}
			var batch []*stage.Event
			for i := range 100 {
				code := "ok\t\\" // escapes must survive COPY
				switch i {
				case 37:
					code = "toolong"
				case 80:
					code = ""
				}
				var id any = json.Number(fmt.Sprint(i))
				if i == 61 {
					id = "sixty-one"
				}
				ev := record(rec, uint64(i), id, map[string]any{"attrs": map[string]any{"code": code}})
				if i == 80 {
					ev.Set("attrs", map[string]any{}) // missing: NULL
				}
				batch = append(batch, ev)
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 98 || len(nacked) != 2 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			if err := nacked[37]; err == nil || !strings.Contains(err.Error(),
				"ERROR: value too long for type character varying(5) (SQLSTATE 22001)") {
				t.Errorf("event 37 nacked with %v", err)
			}
			if err := nacked[61]; err == nil || !strings.Contains(err.Error(),
				`record 61: column "id" (field id): string "sixty-one" is not an integer`) {
				t.Errorf("event 61 nacked with %v", err)
			}
			if c37, c61 := stage.ErrorClass(nacked[37]), stage.ErrorClass(nacked[61]); c37 != "database" || c61 != "invalid" {
				t.Errorf("classes: refused by PostgreSQL %q, not convertible %q; want database, invalid", c37, c61)
			}
			if n := count(t, db, `SELECT count(*) FROM events WHERE code = E'ok\t\\'`); n != 97 {
				t.Fatalf("%d rows with the code, want 97", n)
			}
			if n := count(t, db, "SELECT count(*) FROM events WHERE id = 80 AND code IS NULL"); n != 1 {
				t.Fatalf("row 80 has no NULL code")
			}
		})
	}
}

// observed returns a logger whose warnings the test can read.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return zap.New(core), logs
}

// The server restarts while a COPY is in flight (held behind a lock): the
// batch fails with the shutdown, is retried, and commits once the server
// is back. Nothing is lost, nothing acked early.
func TestServerRestartMidBatch(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
			log, logs := observed()
			// conflict: ignore, as an at-least-once pipeline runs: the
			// shutdown can let the waiting write take the lock and commit
			// just before its connection is cut, so the client never hears
			// of the commit and its retry resends rows that are stored.
			s := newSink(t, config(srv.DSN(), map[string]any{"method": method, "conflict": "ignore"}), log)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 100))

			locker := connect(t, srv.DSN())
			tx, err := locker.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			exec(t, tx.Conn(), "LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
			batch := batchOf(rec, 100, 2100)
			done := make(chan error, 1)
			go func() { done <- s.Handle(ctx, batch, nil) }()
			poll.Until(t, "the write to wait on the lock", func() bool {
				return count(t, locker, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") > 0
			})
			// Cut the waiting write's connection before the restart: the
			// restart alone may end the locker first, and then the write
			// can commit before its own connection is cut, with nothing to
			// retry. The retry waits on the lock again until the restart.
			if n := count(t, locker, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock') AS cut"); n == 0 {
				t.Fatal("no waiting write to cut")
			}
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if acked, nacked := rec.results(); acked != 2100 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			db := connect(t, srv.DSN())
			if n := count(t, db, "SELECT count(*) FROM events"); n != 2100 {
				t.Fatalf("%d rows, want 2100", n)
			}
			if logs.FilterMessage("PostgreSQL write failed; retrying the batch").Len() == 0 {
				t.Fatal("no retry logged")
			}
		})
	}
}

func TestStartWhileServerDown(t *testing.T) {
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	// Trust authentication ignores the password; it is there to be hidden.
	dsn := strings.Replace(srv.DSN(), "postgres@", "postgres:hunter2secret@", 1)

	t.Run("fail", func(t *testing.T) {
		log, logs := observed()
		s := newSink(t, config(dsn, map[string]any{"on_start": "fail"}), log)
		err := s.Start(ctx)
		if err == nil {
			t.Fatal("Start succeeded with the server down")
		}
		msg := err.Error()
		if !strings.Contains(msg, "is not reachable (on_start: fail)") || !strings.Contains(msg, "postgres:xxxxx@127.0.0.1") {
			t.Errorf("unclear error: %s", msg)
		}
		if strings.Contains(msg, "hunter2secret") || len(logs.All()) != 0 {
			t.Errorf("password shown or attempts logged: %s", msg)
		}
	})

	t.Run("retry", func(t *testing.T) {
		log, logs := observed()
		s := newSink(t, config(dsn, nil), log)
		done := make(chan error, 1)
		go func() { done <- s.Start(ctx) }()
		const msg = "PostgreSQL is not reachable yet; retrying (on_start: retry)"
		poll.Until(t, "a retry to be logged", func() bool { return logs.FilterMessage(msg).Len() >= 2 })
		if err := srv.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, e := range logs.All() {
			for _, f := range e.Context {
				if strings.Contains(f.String, "hunter2secret") || (f.Interface != nil && strings.Contains(fmt.Sprint(f.Interface), "hunter2secret")) {
					t.Errorf("password logged: %s %v", e.Message, f)
				}
			}
		}
		rec := &recorder{}
		handle(t, s, batchOf(rec, 0, 10))
		if acked, _ := rec.results(); acked != 10 {
			t.Fatalf("acked %d", acked)
		}
	})
}

// With PostgreSQL away during Handle: when the stage is stopped (ctx
// ends) Handle returns ctx's error and acks nothing; with retry.max it
// gives up after that many retries.
func TestServerDownDuringHandle(t *testing.T) {
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	retryMax := config(srv.DSN(), map[string]any{"retry": stage.NewConfig(map[string]any{
		"max": 2, "backoff": time.Millisecond, "max_backoff": 2 * time.Millisecond})})
	forever := newSink(t, config(srv.DSN(), nil), nil)
	limited := newSink(t, retryMax, nil)
	for _, s := range []*Sink{forever, limited} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("cancel", func(t *testing.T) {
		hctx, hcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer hcancel()
		rec := &recorder{}
		err := forever.Handle(hctx, batchOf(rec, 0, 10), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Handle returned %v, want the context's error", err)
		}
		if acked, _ := rec.results(); acked != 0 {
			t.Fatalf("%d events acked with the server down", acked)
		}
	})
	t.Run("retry.max", func(t *testing.T) {
		rec := &recorder{}
		var attempts attemptLog
		err := limited.Handle(context.WithValue(ctx, track.HealthKey{}, &attempts), batchOf(rec, 0, 10), nil)
		if err == nil || !strings.HasPrefix(err.Error(), `10 rows not stored after 2 retries`) {
			t.Fatalf("Handle returned %v", err)
		}
		if acked, _ := rec.results(); acked != 0 {
			t.Fatalf("%d events acked with the server down", acked)
		}
		// The two tries retried are reported to the stage's health as
		// they fail; the last is Handle's error, which the runtime counts.
		got := attempts.get()
		if len(got) != 2 || got[0] == nil || got[1] == nil || !strings.Contains(got[1].Error(), "PostgreSQL write failed, retrying") {
			t.Fatalf("attempts reported: %v; want two failures", got)
		}
	})
}

// attemptLog stands in for a stage's health: it keeps the attempts a
// handler reports (stage.ReportAttempt).
type attemptLog struct {
	mu   sync.Mutex
	errs []error
}

func (a *attemptLog) Attempt(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

func (a *attemptLog) get() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.errs...)
}
