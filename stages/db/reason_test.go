package db

// This file tests the reasons records get when refused or failed: the
// stage named once, and the column PostgreSQL refused named with its field.

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// TestFailedBatchNamesStageOnce: a batch Handle fails (the table dropped
// under the sink, retried until retry.max is used up) is failed by the
// engine, which names the stage in the reason its events get; the sink
// does not name it again.
func TestFailedBatchNamesStageOnce(t *testing.T) {
	dsn := pg.NewDatabase(t)
	sink := newSink(t, config(dsn, map[string]any{"retry": stage.NewConfig(map[string]any{
		"max": 1, "backoff": time.Millisecond, "max_backoff": 2 * time.Millisecond})}), nil)
	st, l := engine.NewHandlerStage(stage.Settings{Name: "store", Kind: Kind, Terminal: true, Workers: 1, Batch: 1}, sink, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the engine starts the sink
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	up, upL := engine.NewSourceStage(stage.Settings{Name: "up"}, nil, nil)
	upL.Connect(st, nil)
	exec(t, connect(t, dsn), "DROP TABLE events")
	rec := &recorder{}
	em := up.NewEmitter()
	if err := em.Emit(ctx, recordOn(up, rec, 1, json.Number("1"), nil)); err != nil {
		t.Fatal(err)
	}
	em.Flush(ctx)
	poll.Until(t, "the record to be failed", func() bool { _, nacked := rec.results(); return len(nacked) == 1 })
	l.CloseQueue()
	l.Wait()
	_, nacked := rec.results()
	msg := nacked[1].Error()
	if n := strings.Count(msg, `stage "store"`); n != 1 || !strings.Contains(msg, "events") {
		t.Fatalf("reason %q names the stage %d times, want once", msg, n)
	}
}

// TestRefusalNamesColumn: when PostgreSQL names the column of a row it
// refuses (COPY's context for a value out of range, ColumnName for a NOT
// NULL violation), the record's reason names it and its field, as the
// sink's own refusals do, before PostgreSQL's message and SQLSTATE, and
// without the value COPY quotes. Under method insert, whose casts name no
// column, the sink finds it (castColumns).
func TestRefusalNamesColumn(t *testing.T) {
	const outOfRange = `ERROR: "1e-50" is out of range for type real (SQLSTATE 22003)`
	for _, v := range []struct {
		name     string
		over     map[string]any
		badValue string // record 2's reason
	}{
		{"copy", nil, `column "g4" (field g.four): ` + outOfRange},
		{"copy-update", map[string]any{"conflict": "update"}, `column "g4" (field g.four): ` + outOfRange},
		{"insert", map[string]any{"method": "insert"}, `column "g4" (field g.four): ` + outOfRange},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, f4 real, g4 real, nn text NOT NULL)")
			over := map[string]any{"create": false,
				"columns": [][2]string{{"id", "id"}, {"f4", "f4"}, {"g4", "g.four"}, {"nn", "nn"}}}
			maps.Copy(over, v.over)
			s := startSink(t, config(dsn, over))
			rec := &recorder{}
			var batch []*stage.Event
			for i := range 4 {
				ev := record(rec, uint64(i), i, map[string]any{"f4": json.Number("1.5"), "g.four": json.Number("2.5"), "nn": "x"})
				switch i {
				case 2:
					ev.Set("g.four", json.Number("1e-50"))
				case 3:
					ev.Set("nn", nil)
				}
				batch = append(batch, ev)
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 2 || len(nacked) != 2 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			for seq, want := range map[uint64]string{
				2: v.badValue,
				3: `column "nn" (field nn): ERROR: null value in column "nn" of relation "events" violates not-null constraint (SQLSTATE 23502)`,
			} {
				if err := nacked[seq]; err == nil || err.Error() != `stage "store": record `+strconv.Itoa(int(seq))+` refused: `+want {
					t.Errorf("record %d nacked with %v, want %s", seq, err, want)
				}
			}
		})
	}
}

// The column of COPY's context is found by the context's shape, not its
// words (translated under lc_messages), among the sink's columns: the
// longest name there, never a part of the value.
func TestRefusedColumnReading(t *testing.T) {
	s := &Sink{cols: []column{{name: "f"}, {name: "f4"}, {name: "my col"}, {name: "a"}}}
	for where, want := range map[string]string{
		`COPY events, line 1, column f4: "1e-50"`:                    "f4",
		`COPY events, line 1, column f4`:                             "f4",
		`COPY events, ligne 1, colonne f4 : « 1e-50 »`:               "f4",
		`COPY events, line 12, column f: "x f4: y"`:                  "f",
		`COPY events, line 1, column my col: "1"`:                    "my col",
		`COPY events, line 1, column other: "1"`:                     "",
		`COPY events, line 1: "1,2"`:                                 "",
		"PL/pgSQL function f() line 3 at RAISE\nCOPY events, line 1": "",
		"SQL statement \"x\"\nCOPY events, line 2, column a: \"1\"":  "a",
	} {
		if got := s.refusedColumn(&pgconn.PgError{Code: "22003", Where: where}); got != want {
			t.Errorf("column of %q: %q, want %q", where, got, want)
		}
	}
}

// TestInsertCastRefusalNamesColumn: under method insert a value its
// column's type refuses is cast in the INSERT (to uuid, timestamptz) or
// assigned after it (varchar(3)'s length, numeric(4,1)'s precision), and
// PostgreSQL's error names no column. The sink finds it, and the record's
// reason names the column and its field before PostgreSQL's words; the
// first refused column of a row with two, as PostgreSQL reports it. The
// rest of the batch is stored. Before, the reason named no column.
func TestInsertCastRefusalNamesColumn(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, u uuid, at timestamptz, v varchar(3), amount numeric(4,1), note text)")
	s := startSink(t, config(dsn, map[string]any{"create": false, "method": "insert",
		"columns": [][2]string{{"id", "id"}, {"u", "u"}, {"at", "at"}, {"v", "v"}, {"amount", "m.amount"}, {"note", "note"}}}))
	rec := &recorder{}
	var batch []*stage.Event
	bad := map[int]map[string]any{
		3:  {"u": "not-a-uuid"},
		7:  {"at": "yesterday-ish"},
		11: {"v": "abcd"},
		13: {"m.amount": json.Number("12345")},
		17: {"v": "toolong", "amount": json.Number("1"), "at": "nope"}, // at comes first
	}
	for i := range 20 {
		fields := map[string]any{"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "at": "2027-01-01T00:00:00Z", "v": "abc",
			"m.amount": json.Number("123.4"), "note": "fine"}
		maps.Copy(fields, bad[i])
		batch = append(batch, record(rec, uint64(i), i, fields))
	}
	handle(t, s, batch)
	acked, nacked := rec.results()
	if acked != 15 || len(nacked) != 5 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	for seq, want := range map[uint64]string{
		3:  `column "u" (field u): ERROR: invalid input syntax for type uuid: "not-a-uuid" (SQLSTATE 22P02)`,
		7:  `column "at" (field at): ERROR: invalid input syntax for type timestamp with time zone: "yesterday-ish" (SQLSTATE 22007)`,
		11: `column "v" (field v): ERROR: value too long for type character varying(3) (SQLSTATE 22001)`,
		13: `column "amount" (field m.amount): ERROR: numeric field overflow (SQLSTATE 22003)`,
		17: `column "at" (field at): ERROR: invalid input syntax for type timestamp with time zone: "nope" (SQLSTATE 22007)`,
	} {
		if err := nacked[seq]; err == nil || err.Error() != `stage "store": record `+strconv.Itoa(int(seq))+` refused: `+want ||
			stage.ErrorClass(err) != "database" {
			t.Errorf("record %d nacked with %v, want %s", seq, err, want)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 15 {
		t.Fatalf("%d rows stored, want 15", n)
	}
}
