package db

// This file tests COPY's binary and text formats: the same values stored
// alike, integers out of range refused before PostgreSQL sees them, and
// rows encoded without allocating per row.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// The same values go through COPY's binary format (every column has one)
// and its text format (a timestamptz column has none here) and come out
// the same: escapes, line ends, non-ASCII text, numbers into integer
// columns, JSON, NULLs, and the record itself.
func TestCopyFormatsStoreTheSame(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	cols := [][2]string{{"id", "id"}, {"s", "s"}, {"n", "n"}, {"j", "j"},
		{"v", "v"}, {"body", "$"}}
	types := [][2]string{{"id", "bigint"}, {"n", "smallint"}, {"j", "jsonb"},
		{"v", "varchar(20)"}, {"body", "text"}}
	binSink := startSink(t, config(dsn, map[string]any{"table": "bin", "columns": cols, "types": types}))
	textCols := append(append([][2]string(nil), cols...), [2]string{"at", "at"})
	textSink := startSink(t, config(dsn, map[string]any{"table": "txt", "columns": textCols,
		"types": append(append([][2]string(nil), types...), [2]string{"at", "timestamptz"})}))
	if !binSink.lay.Load().binary || textSink.lay.Load().binary {
		t.Fatalf("binary: %v and %v, want true and false", binSink.lay.Load().binary, textSink.lay.Load().binary)
	}
	values := []map[string]any{
		{"id": int64(1), "s": "tab\there\nnew\\line\r", "n": int64(-32768), "j": map[string]any{"a": []any{int64(1), "x\ty"}}, "v": "é ü 漢字"},
		{"id": json.Number("2"), "s": "", "n": " 42 ", "j": "a string", "v": nil},
		{"id": "3", "n": 1.0, "j": json.RawMessage(`{"raw":true}`), "v": json.Number("1e400")},
		{"id": int64(4), "s": []byte("bytes"), "n": json.Number("1e3"), "j": true, "v": int64(7)},
	}
	for _, s := range []*Sink{binSink, textSink} {
		rec := &recorder{}
		var batch []*stage.Event
		for i, m := range values {
			ev := src.NewEvent([]byte(`{"rec":"`+strings.Repeat("\\t", i)+`"}`+"\t\\\n"), uint64(i+1), stage.Origin{To: rec, Key: 1})
			for k, v := range m {
				ev.Set(k, v)
			}
			ev.Set("at", "2026-01-02T03:04:05Z")
			batch = append(batch, ev)
		}
		handle(t, s, batch)
		if acked, nacked := rec.results(); acked != len(values) || len(nacked) != 0 {
			t.Fatalf("%s: acked %d, nacked %v", s.table.Sanitize(), acked, nacked)
		}
	}
	const q = `SELECT count(*) FROM (SELECT id, s, n, j, v, body FROM bin EXCEPT SELECT id, s, n, j, v, body FROM txt) d`
	if n := count(t, db, q); n != 0 {
		t.Fatalf("%d rows differ between the formats", n)
	}
	var s, body string
	var n int
	var j string
	if err := db.QueryRow(context.Background(), `SELECT s, n, j::text, body FROM bin WHERE id = 1`).Scan(&s, &n, &j, &body); err != nil {
		t.Fatal(err)
	}
	if s != "tab\there\nnew\\line\r" || n != -32768 || j != `{"a": [1, "x\ty"]}` || body != `{"rec":""}`+"\t\\\n" {
		t.Fatalf("row 1: %q %d %q %q", s, n, j, body)
	}
	if c := count(t, db, `SELECT count(*) FROM bin WHERE v IS NULL AND id = 2 AND n = 42 AND j = '"a string"'`); c != 1 {
		t.Fatal("row 2 differs")
	}
}

// An integer out of its column's range is refused before PostgreSQL sees
// it, naming the column; the rest of the batch is stored.
func TestBinaryIntegerRange(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"columns": [][2]string{{"id", "id"}, {"n", "n"}},
		"types": [][2]string{{"id", "bigint"}, {"n", "integer"}}}))
	rec := &recorder{}
	batch := []*stage.Event{
		record(rec, 1, int64(1), map[string]any{"n": int64(2147483647)}),
		record(rec, 2, int64(2), map[string]any{"n": int64(2147483648)}),
		record(rec, 3, int64(3), map[string]any{"n": "x"}),
	}
	handle(t, s, batch)
	acked, nacked := rec.results()
	if acked != 1 || len(nacked) != 2 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if err := nacked[2]; err == nil || !strings.Contains(err.Error(), `column "n" (field n): 2147483648 is out of range for integer`) ||
		stage.ErrorClass(err) != "invalid" {
		t.Errorf("record 2: %v (%s)", err, stage.ErrorClass(err))
	}
}

// Encoding a batch of light rows allocates nothing per row, in either
// format; nor under conflict: update, with the rows' keys (host, n), one
// row in two with a NULL part.
func TestAddRowDoesNotAllocate(t *testing.T) {
	for _, binaryFormat := range []bool{true, false} {
		for _, update := range []bool{false, true} {
			s := &Sink{update: update, version: -1, isKey: []bool{true, true, false}, cols: []column{
				{name: "host", path: "host", kind: kindText, bin: binText},
				{name: "n", path: "n", kind: kindInt, bin: binInt8},
				{name: "body", path: "$", kind: kindText, bin: binText},
			}}
			lay := &layout{cols: s.cols, binary: binaryFormat, sortCol: -1}
			payload := []byte("<13>1 - web-1 app - - - hello\tworld")
			ev := src.NewEvent(payload, 1, stage.Origin{})
			ev.SetValue("host", stage.BytesValue(payload[8:13]))
			ev.SetValue("n", stage.IntValue(42))
			nullKey := src.NewEvent(payload, 2, stage.Origin{})
			nullKey.SetValue("n", stage.IntValue(42))
			r := &rows{}
			r.reset(lay, false)
			for range 100 { // grow the buffers first
				s.addRow(r, ev)
				s.addRow(r, nullKey)
			}
			allocs := testing.AllocsPerRun(100, func() {
				r.reset(lay, false)
				for range 25 {
					if err := s.addRow(r, ev); err != nil {
						t.Fatal(err)
					}
					if err := s.addRow(r, nullKey); err != nil {
						t.Fatal(err)
					}
				}
			})
			if allocs != 0 {
				t.Errorf("binary %v, update %v: %v allocations per batch, want 0", binaryFormat, update, allocs)
			}
		}
	}
}
