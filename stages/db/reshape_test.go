package db

// This file tests a column that changes type under a running stage:
// altered, or dropped and added again with another type, its rows are
// written for the new type, and refused only when they do not fit it.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// reshapeVariants are the ways the sink writes a table: COPY's binary
// format, its text format (a timestamptz column has no binary form here),
// method insert, and an upsert through the load table.
var reshapeVariants = []struct {
	name, method, conflict string
	text                   bool
}{
	{"copy-binary", "copy", "error", false}, {"copy-text", "copy", "error", true},
	{"insert", "insert", "error", false}, {"upsert", "copy", "update", false},
}

// reshapeSink makes events (id bigint PRIMARY KEY, n integer, c text,
// at timestamptz) and a sink writing id, n and c (and at, to write COPY's
// text format), with a bounded retry so that a batch held for ever fails
// the test rather than hanging it.
func reshapeSink(t *testing.T, method, conflict string, text bool) (*Sink, func(string) int, func(string)) {
	t.Helper()
	dsn := pg.NewDatabase(t)
	db := connect(t, dsn)
	exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, n integer, c text, at timestamptz)")
	cols := [][2]string{{"id", "id"}, {"n", "n"}, {"c", "c"}}
	if text {
		cols = append(cols, [2]string{"at", "at"})
	}
	s := startSink(t, config(dsn, map[string]any{"create": false, "method": method, "conflict": conflict, "types": nil, "columns": cols,
		"retry": stage.NewConfig(map[string]any{"max": 50, "backoff": time.Millisecond, "max_backoff": 50 * time.Millisecond})}))
	if s.lay.Load().binary == (text || method == "insert") {
		t.Fatalf("binary %v for %s", s.lay.Load().binary, method)
	}
	return s, func(q string) int { return count(t, db, q) }, func(q string) { exec(t, db, q) }
}

// reshapeRecord is record id with fields n and c.
func reshapeRecord(rec *recorder, id int, n, c any) *stage.Event {
	return record(rec, uint64(id), json.Number(fmt.Sprint(id)), map[string]any{"n": n, "c": c, "at": "2027-01-01T00:00:00Z"})
}

// TestColumnTypeChangedRewritten: a column altered to another type while
// the stage runs, or dropped and added again with one, is written for its
// new type. The sink encoded every row for the type it read at Start, so
// before, each later row was refused or held: integer widened to bigint,
// COPY's binary format sent 4 bytes where bigint reads 8 ("insufficient
// data left in message", 08P01, retried for ever), method insert cast to
// integer ("integer out of range", 22003, the row refused), an upsert's
// load table of the old type refused the 8 bytes (22P03), and a value
// past integer's range was refused before it was sent; text dropped and
// added back as bigint, "7" went as one byte where bigint reads 8 (08P01)
// or, under insert and an upsert, as text PostgreSQL does not assign to
// bigint (42804, the batch failed). Now the write that fails so reads the
// table's columns again and the rows are encoded for the new types:
// those that fit are stored, and one that does not is refused with the
// sink's reason for it, naming the column. The drop itself is still held
// as an outage (42703) until the column is back. Bigint altered to text
// takes words as well as digits; before, a word was refused as "not an
// integer" without a write, and under COPY's binary format a number went
// as 8 bytes holding NULs (22021).
func TestColumnTypeChangedRewritten(t *testing.T) {
	for _, v := range reshapeVariants {
		t.Run(v.name, func(t *testing.T) {
			s, count, alter := reshapeSink(t, v.method, v.conflict, v.text)
			// A value the sink refuses itself has the types read at most
			// once a second (localRecheck): each change here comes a
			// second after the last, on the sink's clock.
			var clock atomic.Int64
			s.now = func() time.Time { return time.Unix(0, clock.Load()) }
			exec := func(q string) { alter(q); clock.Add(int64(localRecheck)) }
			rec := &recorder{}
			write := func(from, to int, n func(int) any, c func(int) any) {
				t.Helper()
				var batch []*stage.Event
				for id := from; id < to; id++ {
					batch = append(batch, reshapeRecord(rec, id, n(id), c(id)))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := s.Handle(ctx, batch, nil); err != nil {
					t.Fatalf("Handle: %v", err)
				}
			}
			small := func(id int) any { return id }
			word := func(id int) any { return fmt.Sprintf("v%d", id) }
			write(0, 10, small, word)

			exec("ALTER TABLE events ALTER COLUMN n TYPE bigint")
			write(10, 20, func(id int) any { return json.Number(fmt.Sprint(3_000_000_000 + id)) }, word)
			if acked, nacked := rec.results(); acked != 20 || len(nacked) != 0 {
				t.Fatalf("after integer became bigint: acked %d, nacked %v; want all 20 stored", acked, nacked)
			}
			if n := count("SELECT count(*) FROM events WHERE n = 3000000000 + id"); n != 10 {
				t.Fatalf("%d rows with their bigint n, want 10", n)
			}

			exec("ALTER TABLE events DROP COLUMN c")
			var batch []*stage.Event
			for id := 20; id < 30; id++ {
				c := "7"
				if id == 25 {
					c = "x7"
				}
				batch = append(batch, reshapeRecord(rec, id, id, c))
			}
			done, _ := heldWrite(t, s, rec, batch, "42703")
			exec("ALTER TABLE events ADD COLUMN c bigint")
			if err := <-done; err != nil {
				t.Fatalf("Handle: %v", err)
			}
			acked, nacked := rec.results()
			want := `stage "store": record 25: column "c" (field c): string "x7" is not an integer`
			if acked != 29 || len(nacked) != 1 || nacked[25] == nil || nacked[25].Error() != want {
				t.Fatalf("after text became bigint: acked %d, nacked %v; want 29 stored and record 25 refused with %s", acked, nacked, want)
			}
			if n := count("SELECT count(*) FROM events WHERE c = 7"); n != 9 {
				t.Fatalf("%d rows with c = 7, want 9", n)
			}

			exec("ALTER TABLE events ALTER COLUMN c TYPE text")
			write(30, 40, small, func(id int) any {
				if id%2 == 0 {
					return "8"
				}
				return "eight"
			})
			if acked, nacked := rec.results(); acked != 39 || len(nacked) != 1 {
				t.Fatalf("after bigint became text: acked %d, nacked %v; want all 10 more stored", acked, nacked)
			}
			if n := count("SELECT count(*) FROM events WHERE id >= 30 AND c = CASE WHEN id % 2 = 0 THEN '8' ELSE 'eight' END"); n != 10 {
				t.Fatalf("%d rows with their text c, want 10", n)
			}
		})
	}
}

// TestColumnBackWithAnotherTypeAfterOutage: a column dropped while the
// stage runs holds its batch as an outage (42703); when it is added again
// with another type, the batch is encoded for that type. jsonb added back
// as text: COPY's binary format sent each record after jsonb's version
// byte, which text stores without an error ("\x01{..."), and method
// insert and an upsert cast it to jsonb first, storing jsonb's rewording
// of the record; now the record is stored as it came, as into any text
// column. Each retry of the outage reads the table's types.
func TestColumnBackWithAnotherTypeAfterOutage(t *testing.T) {
	for _, c := range []struct{ name, method, conflict string }{
		{"copy", "copy", "error"}, {"insert", "insert", "error"}, {"upsert", "copy", "update"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			admin := connect(t, dsn)
			s := startSink(t, config(dsn, map[string]any{"method": c.method, "conflict": c.conflict}))
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 10))
			exec(t, admin, "ALTER TABLE events DROP COLUMN body")
			done, _ := heldWrite(t, s, rec, batchOf(rec, 10, 510), "42703")
			exec(t, admin, "ALTER TABLE events ADD COLUMN body text")
			if err := <-done; err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if acked, nacked := rec.results(); acked != 510 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			if n := count(t, admin, `SELECT count(*) FROM events WHERE body = format('{"id":%s,"msg":"hello from the test suite","n":%s}', id, id)`); n != 500 {
				var body string
				if err := admin.QueryRow(context.Background(), "SELECT body FROM events WHERE id = 10").Scan(&body); err != nil {
					t.Fatal(err)
				}
				t.Fatalf("%d of the 500 records stored as they came into the text column; record 10 is %q", n, body)
			}
		})
	}
}

// TestGroupKeepsToOneLayout: a group's COPY is framed and written by its
// leader's layout, so a batch encoded for another (a column changed type
// while it waited in the queue) is not written in it, but told
// errReshaped, which has Handle encode it again; the leader's batch is
// written. Written in the group, its rows were read as the other type's.
func TestGroupKeepsToOneLayout(t *testing.T) {
	s, count, _ := reshapeSink(t, "copy", "error", false)
	rec := &recorder{}
	cur := s.lay.Load()
	old := *cur // as the layout was before a reshape
	batch := func(lay *layout, from, to int) *rows {
		r := &rows{res: make(chan outcome, 1)}
		r.reset(lay, false)
		for id := from; id < to; id++ {
			if err := s.addRow(r, reshapeRecord(rec, id, id, "c")); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	lead, stale := batch(cur, 0, 5), batch(&old, 5, 10)
	s.groups.mu.Lock()
	s.groups.lanes++ // as join does for the group it hands a leader
	s.groups.mu.Unlock()
	s.lead(context.Background(), []*rows{lead, stale})
	if o := <-lead.res; o.err != nil {
		t.Fatalf("the leader's batch: %v, want it written", o.err)
	}
	if o := <-stale.res; o.err != errReshaped {
		t.Fatalf("the batch of another layout: %v, want errReshaped", o.err)
	}
	if n := count("SELECT count(*) FROM events"); n != 5 {
		t.Fatalf("%d rows stored, want the leader's 5", n)
	}
}

// TestColumnTypeChangedUnderConcurrentWrites: four workers write batches
// while a column is widened from integer to bigint under them, and once
// it is, write ten batches more each with values only bigint holds.
// Whatever the batches' order against the change (encoded before it and
// written after, in a group with batches encoded after it), every record
// is stored, with its value, and none is refused.
func TestColumnTypeChangedUnderConcurrentWrites(t *testing.T) {
	for _, v := range []struct{ name, conflict string }{{"copy", "error"}, {"upsert", "update"}} {
		t.Run(v.name, func(t *testing.T) {
			s, count, exec := reshapeSink(t, "copy", v.conflict, false)
			rec := &recorder{}
			var altered atomic.Bool
			var sent, big atomic.Int64
			const workers, after, size = 4, 10, 25
			errs := make(chan error, workers)
			for w := range workers {
				go func() {
					id, left := w*1_000_000, after
					for left > 0 {
						wide := altered.Load()
						if wide {
							left--
						}
						var batch []*stage.Event
						for range size {
							var n any = id
							if wide {
								n = json.Number(fmt.Sprint(3_000_000_000 + id))
								big.Add(1)
							}
							batch = append(batch, reshapeRecord(rec, id, n, "c"))
							id++
						}
						sent.Add(size)
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						err := s.Handle(ctx, batch, nil)
						cancel()
						if err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			poll.Until(t, "some batches stored", func() bool { acked, _ := rec.results(); return acked >= 10*size })
			exec("ALTER TABLE events ALTER COLUMN n TYPE bigint")
			altered.Store(true)
			for range workers {
				if err := <-errs; err != nil {
					t.Fatalf("Handle: %v", err)
				}
			}
			total := int(sent.Load())
			if acked, nacked := rec.results(); acked != total || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %d (%v); want all %d stored", acked, len(nacked), nacked, total)
			}
			if n := count("SELECT count(*) FROM events WHERE n = id OR n = 3000000000 + id"); n != total {
				t.Fatalf("%d rows with their n, want %d", n, total)
			}
			if n := count("SELECT count(*) FROM events WHERE n >= 3000000000"); n != int(big.Load()) || n != workers*after*size {
				t.Fatalf("%d rows with a bigint n, want %d", n, workers*after*size)
			}
		})
	}
}
