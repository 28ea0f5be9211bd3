package db

// This file tests what looking for the column of rows PostgreSQL refused
// under method insert costs: one transaction a batch, and at most
// maxCastSearches rows.

import (
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// TestCastSearchOncePerBatch: a batch of 50 records under method insert,
// 40 of them with a uuid that is not one (22P02, which the INSERT's cast
// raises naming no column), into a table of 10 columns. The columns of the
// first maxCastSearches refused rows are looked for in one transaction,
// and the other rows are refused naming none. Before, each refused row
// had a transaction and a temporary table of its own, and a savepoint and
// an INSERT per column: 40 transactions for the batch.
func TestCastSearchOncePerBatch(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, `CREATE TABLE events (id bigint PRIMARY KEY, a text, b text, c text, d text, e text, f text, g text, h text, u uuid)`)
	cols := [][2]string{{"id", "id"}, {"a", "a"}, {"b", "b"}, {"c", "c"}, {"d", "d"}, {"e", "e"}, {"f", "f"}, {"g", "g"}, {"h", "h"}, {"u", "u"}}
	s := startSink(t, config(dsn, map[string]any{"create": false, "method": "insert", "columns": cols}))
	rec := &recorder{}
	batch := func(from int) []*stage.Event {
		var b []*stage.Event
		for i := from; i < from+50; i++ {
			u := "00000000-0000-0000-0000-000000000000"
			if i%5 != 0 {
				u = "not-a-uuid"
			}
			x := map[string]any{"a": "x", "b": "x", "c": "x", "d": "x", "e": "x", "f": "x", "g": "x", "h": "x", "u": u}
			b = append(b, record(rec, uint64(i), i, x))
		}
		return b
	}
	handle(t, s, batch(0))
	if n, rows := s.castSearches.Load(), s.castRows.Load(); n != 1 || rows != maxCastSearches {
		t.Fatalf("%d transactions looked at %d refused rows for their column, want 1 looking at %d", n, rows, maxCastSearches)
	}
	acked, nacked := rec.results()
	if acked != 10 || len(nacked) != 40 {
		t.Fatalf("acked %d, nacked %d; want 10 stored and 40 refused", acked, len(nacked))
	}
	const reason = `ERROR: invalid input syntax for type uuid: "not-a-uuid" (SQLSTATE 22P02)`
	named := 0
	for seq, err := range nacked {
		msg := err.Error()
		switch {
		case strings.HasSuffix(msg, `refused: column "u" (field u): `+reason):
			named++
		case !strings.HasSuffix(msg, `refused: `+reason):
			t.Errorf("record %d nacked with %q", seq, msg)
		}
	}
	if named != maxCastSearches {
		t.Errorf("%d refusals name the column, want %d", named, maxCastSearches)
	}
	handle(t, s, batch(50))
	if n := s.castSearches.Load(); n != 2 {
		t.Fatalf("%d transactions after a second batch, want 2", n)
	}
}
