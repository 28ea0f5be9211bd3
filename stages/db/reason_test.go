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
// without the value COPY quotes. The insert method's casts name no
// column for the value.
func TestRefusalNamesColumn(t *testing.T) {
	const outOfRange = `ERROR: "1e-50" is out of range for type real (SQLSTATE 22003)`
	for _, v := range []struct {
		name     string
		over     map[string]any
		badValue string // record 2's reason
	}{
		{"copy", nil, `column "g4" (field g.four): ` + outOfRange},
		{"copy-update", map[string]any{"conflict": "update"}, `column "g4" (field g.four): ` + outOfRange},
		{"insert", map[string]any{"method": "insert"}, outOfRange},
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
