package db

// This file tests the search for text PostgreSQL cannot store (not UTF-8,
// a NUL, jsonb's \u0000, a lone surrogate): found without bisecting, in a
// group too, and the reasons the records holding it are refused with.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// rolledBack returns how many transactions of the database c is
// connected to have rolled back, once the sink's connections have sent
// their counts (a backend sends them at most once a second otherwise):
// Start rolls back one of its own.
func rolledBack(t *testing.T, s *Sink, c *pgx.Conn) int {
	t.Helper()
	for _, conn := range s.pool.AcquireAllIdle(context.Background()) {
		_, err := conn.Exec(context.Background(), "SELECT pg_stat_force_next_flush()")
		conn.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	exec(t, c, "SELECT pg_stat_clear_snapshot()")
	return count(t, c, "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()")
}

// rollbacks closes s and returns how many transactions of the database
// c is connected to have rolled back: a write PostgreSQL refused is one.
// A backend sends its counts when it ends, before pg_stat_activity stops
// showing it.
func rollbacks(t *testing.T, s *Sink, c *pgx.Conn) int {
	t.Helper()
	var pids []uint32
	for _, conn := range s.pool.AcquireAllIdle(context.Background()) {
		pids = append(pids, conn.Conn().PgConn().PID())
		conn.Release()
	}
	_ = s.Close()
	poll.Until(t, "the sink's backends to end", func() bool {
		return count(t, c, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids) == 0
	})
	exec(t, c, "SELECT pg_stat_clear_snapshot()")
	return count(t, c, "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()")
}

// Text PostgreSQL cannot store (not UTF-8, as a Latin-1 syslog line; a
// NUL byte; jsonb's \u0000) fails a write with 22021 or 22P05. The records
// holding it are found by looking at the batch's values, not by bisecting:
// of 1000 records with 10 such, the 990 others are stored after one failed
// write, and the 10 are nacked as PostgreSQL words it. Before, each bad
// record cost several failed writes (a load 14 times slower with one bad
// line in a hundred). The reason names the column and its field, and for
// jsonb's \u0000 gives PostgreSQL's DETAIL, as for a lone surrogate. In
// COPY's binary format, its text format (a numeric column has no binary
// form here), and with method insert.
func TestBadTextFoundWithoutBisecting(t *testing.T) {
	for _, v := range []struct{ name, method, amount string }{
		{"copy-binary", "copy", "bigint"}, {"copy-text", "copy", "numeric"}, {"insert", "insert", "bigint"},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, msg text, amount "+v.amount+", body jsonb)")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": v.method,
				"columns": [][2]string{{"id", "id"}, {"msg", "msg"}, {"amount", "amount"}, {"body", "$"}}}))
			before := rolledBack(t, s, db)
			rec := &recorder{}
			want := map[uint64]string{}
			var batch []*stage.Event
			for i := range 1000 {
				ev := record(rec, uint64(i), i, map[string]any{"msg": "Zugriff für alle", "amount": i})
				if i%100 == 37 {
					switch i / 100 % 4 {
					case 0: // a Latin-1 line
						ev.Set("msg", "Zugriff f\xfcr alle")
						want[ev.Seq] = `column "msg" (field msg): ERROR: invalid byte sequence for encoding "UTF8": 0xfc (SQLSTATE 22021)`
					case 1:
						ev.Set("msg", "nul\x00byte")
						want[ev.Seq] = `column "msg" (field msg): ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`
					case 2: // the record itself, stored as jsonb
						ev.Payload = fmt.Appendf(nil, `{"id":%d,"msg":"Zugriff f%sr alle"}`, i, "\xfc")
						want[ev.Seq] = `column "body" (field $): ERROR: invalid byte sequence for encoding "UTF8": 0xfc (SQLSTATE 22021)`
					case 3:
						ev.Payload = fmt.Appendf(nil, `{"id":%d,"msg":"nul\u0000escape","ok":"\\u0000"}`, i)
						want[ev.Seq] = `column "body" (field $): ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05): ` + nulDetail
					}
				}
				batch = append(batch, ev)
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 990 || len(nacked) != 10 {
				t.Fatalf("acked %d, nacked %d: %v", acked, len(nacked), nacked)
			}
			for seq, reason := range want {
				if err := nacked[seq]; err == nil || err.Error() != fmt.Sprintf(`stage "store": record %d refused: %s`, seq, reason) ||
					stage.ErrorClass(err) != "database" {
					t.Errorf("record %d nacked with %v, want %s", seq, err, reason)
				}
			}
			if n := count(t, db, "SELECT count(*) FROM events WHERE msg = 'Zugriff für alle' AND id % 100 <> 37"); n != 990 {
				t.Errorf("%d of the 990 good rows stored", n)
			}
			// The batch's write failed, then its good rows' write committed.
			if n := rollbacks(t, s, db) - before; n != 1 {
				t.Errorf("%d writes refused, want the batch's one", n)
			}
		})
	}
}

// The search for bad text reads each value as the sink writes it: an
// escaped backslash before u0000 is no NUL, and a string written into a
// JSON column is valid UTF-8 once encoded, its NUL escaped. A surrogate
// escape is in a pair only when a low one follows a high one at once, as
// PostgreSQL's JSON parser reads them.
func TestBadTextReading(t *testing.T) {
	for _, c := range []struct {
		in      string
		bad     int
		jsonNUL bool
	}{
		{"ok", -1, false}, {"f\xfcr", 1, false}, {"a\x00", 1, false}, {"é\xe9r", 2, false},
		{`"\u0000"`, -1, true}, {`"\\u0000"`, -1, false}, {`"\\\u0000"`, -1, true}, {`\\\\u0000 \u0000`, -1, true}, {`"\uD800 \u0000"`, -1, true},
	} {
		if got := invalidUTF8([]byte(c.in)); got != c.bad {
			t.Errorf("invalidUTF8(%q) = %d, want %d", c.in, got, c.bad)
		}
		if got, _ := jsonEscapes([]byte(c.in)); got != c.jsonNUL {
			t.Errorf("jsonEscapes(%q) finds \\u0000: %v, want %v", c.in, got, c.jsonNUL)
		}
	}
	for in, want := range map[string]string{
		`"\uD83D\uDE00"`: "", `"\\uD800"`: "", `"\\\uD83D\uDE00 \u00e9\n"`: "", `["\uD800","\uDC00"]`: lowAlone,
		`"\uD800"`: lowAlone, `"\uD800x"`: lowAlone, `"\uD800\n"`: lowAlone, `"\uD800\u0041"`: lowAlone,
		`"\uDC00"`: lowAlone, `"\\\uDC00"`: lowAlone, `"\uD800\uDBFF"`: highAfterHigh, `"\ud800\udc00\udbff\uDFFF"`: "",
		`"\uD800`: lowAlone, `"\uD8`: "",
	} {
		if nul, got := jsonEscapes([]byte(in)); nul || got != want {
			t.Errorf("jsonEscapes(%s) = %v, %q, want false, %q", in, nul, got, want)
		}
	}
	if got := sequence([]byte("\xe9r a")); got != "0xe9 0x72 0x20" {
		t.Errorf("sequence: %s, want PostgreSQL's 0xe9 0x72 0x20", got)
	}
	if got := strings.Count(sequence([]byte("\xf0")), "0x"); got != 1 {
		t.Errorf("sequence of a cut character shows %d bytes, want the one there is", got)
	}
}

// When a COPY of a group of batches fails on bad text, each batch with
// some refuses it and writes the rest, without first writing itself alone
// to fail again; a batch without any is written alone, as after any
// refused group.
func TestBadTextInGroup(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, nil))
	db := connect(t, dsn)
	before := rolledBack(t, s, db)
	rec := &recorder{}
	latin1 := func(b []*stage.Event, ids ...int) []*stage.Event {
		for _, ev := range b {
			for _, id := range ids {
				if ev.Seq == uint64(id) {
					ev.Payload = fmt.Appendf(nil, `{"id":%d,"msg":"f%sr"}`, id, "\xfc")
				}
			}
		}
		return b
	}
	release, errs := groupOf(t, s, dsn, batchOf(rec, 0, 10),
		latin1(batchOf(rec, 100, 200), 117, 150), batchOf(rec, 200, 300), latin1(batchOf(rec, 300, 400), 399))
	release()
	waitAll(t, errs...)
	acked, nacked := rec.results()
	if _, ok := nacked[117]; !ok || acked != 307 || len(nacked) != 3 || nacked[150] == nil || nacked[399] == nil {
		t.Fatalf("acked %d, nacked %v; want 117, 150 and 399 nacked", acked, nacked)
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 307 {
		t.Fatalf("%d rows stored, want 307", n)
	}
	if n := rollbacks(t, s, db) - before; n != 1 {
		t.Errorf("%d writes refused, want the group's one", n)
	}
}

// A jsonb value with a UTF-16 surrogate escape not in a pair (\uD800
// alone, as process.json lets through) fails a write with 22P02, raised by
// PostgreSQL's JSON parser. The records holding one are found by looking
// at the batch's jsonb values, as for text PostgreSQL cannot store, not by
// bisecting: of 1000 records with 10 such, the 990 others (a pair, an
// escaped backslash before u, and a lone surrogate in a json column,
// which takes it, among them) are stored after one failed write, and the 10
// are nacked naming the column, with PostgreSQL's words and DETAIL.
func TestLoneSurrogateFoundWithoutBisecting(t *testing.T) {
	const (
		low  = `column "body" (field $): ERROR: invalid input syntax for type json (SQLSTATE 22P02): Unicode low surrogate must follow a high surrogate.`
		high = `column "j" (field j): ERROR: invalid input syntax for type json (SQLSTATE 22P02): Unicode high surrogate must not follow a high surrogate.`
	)
	for _, v := range []struct{ name, method, amount string }{
		{"copy-binary", "copy", "bigint"}, {"copy-text", "copy", "numeric"}, {"insert", "insert", "bigint"},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE TABLE events (id bigint PRIMARY KEY, amount "+v.amount+", j jsonb, plain json, body jsonb)")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": v.method,
				"columns": [][2]string{{"id", "id"}, {"amount", "amount"}, {"j", "j"}, {"plain", "plain"}, {"body", "$"}}}))
			before := rolledBack(t, s, db)
			rec := &recorder{}
			var payloads []string
			want := map[uint64]string{}
			for i := range 1000 {
				p := fmt.Sprintf(`{"id":%d,"amount":%d,"j":{"smile":"\uD83D\uDE00"},"msg":"\\uD800"}`, i, i)
				if i%100 == 37 {
					switch i / 100 % 3 {
					case 0: // a high surrogate alone
						p = fmt.Sprintf(`{"id":%d,"msg":"x\uD800y"}`, i)
						want[uint64(i+1)] = low
					case 1: // a low one alone, in a nested value (and the record)
						p = fmt.Sprintf(`{"id":%d,"j":["\uDC00"]}`, i)
						want[uint64(i+1)] = strings.Replace(low, `column "body" (field $)`, `column "j" (field j)`, 1)
					case 2: // two high ones
						p = fmt.Sprintf(`{"id":%d,"j":{"k":"\uD800\uDBFF"}}`, i)
						want[uint64(i+1)] = high
					}
				}
				payloads = append(payloads, p)
			}
			batch := decoded(t, rec, payloads...)
			for _, ev := range batch {
				ev.Set("plain", json.RawMessage(`"\uD800"`)) // not in the record, which goes into jsonb
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if acked != 990 || len(nacked) != 10 {
				t.Fatalf("acked %d, nacked %d: %v", acked, len(nacked), nacked)
			}
			for seq, reason := range want {
				if err := nacked[seq]; err == nil || err.Error() != fmt.Sprintf(`stage "store": record %d refused: %s`, seq, reason) ||
					stage.ErrorClass(err) != "database" {
					t.Errorf("record %d nacked with %v, want %s", seq, err, reason)
				}
			}
			if n := count(t, db, `SELECT count(*) FROM events WHERE j->>'smile' = '😀' AND body->>'msg' = '\uD800' AND plain::text = '"\uD800"' AND id % 100 <> 37`); n != 990 {
				t.Errorf("%d of the 990 good rows stored", n)
			}
			if n := rollbacks(t, s, db) - before; n != 1 {
				t.Errorf("%d writes refused, want the batch's one", n)
			}
		})
	}
}

// A batch of one record that jsonb refuses for a lone surrogate is not
// searched, but its reason is worded as the search words it, with
// PostgreSQL's DETAIL, which its own message lacks.
func TestLoneSurrogateAloneHasDetail(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"types": [][2]string{{"id", "bigint"}, {"body", "jsonb"}}}))
	rec := &recorder{}
	handle(t, s, decoded(t, rec, `{"id":1,"msg":"\uDC00"}`))
	_, nacked := rec.results()
	want := `stage "store": record 1 refused: column "body" (field $): ERROR: invalid input syntax for type json (SQLSTATE 22P02): ` + lowAlone
	if err := nacked[1]; err == nil || err.Error() != want {
		t.Fatalf("record 1 nacked with %v, want %s", err, want)
	}
}

// A record whose jsonb value holds the escape \u0000 is refused naming
// its column and field, with PostgreSQL's message and DETAIL ("\u0000
// cannot be converted to text."), as a lone surrogate is: found in a
// batch by the search (TestBadTextFoundWithoutBisecting) and alone in
// its batch alike, in either COPY format and with method insert. Before,
// the refusal was "unsupported Unicode escape sequence (SQLSTATE 22P05)"
// alone, which does not say what is unsupported, and under method insert
// named no column.
func TestNulEscapeAloneHasDetail(t *testing.T) {
	for _, v := range []struct{ name, method, amount string }{
		{"copy-binary", "copy", "bigint"}, {"copy-text", "copy", "numeric"}, {"insert", "insert", "bigint"},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			exec(t, connect(t, dsn), "CREATE TABLE events (id bigint PRIMARY KEY, amount "+v.amount+", j jsonb, body jsonb)")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": v.method,
				"columns": [][2]string{{"id", "id"}, {"amount", "amount"}, {"j", "j"}, {"body", "$"}}}))
			rec := &recorder{}
			batch := decoded(t, rec, `{"id":1,"amount":1}`)
			batch[0].Set("j", json.RawMessage(`{"k":"a\u0000b"}`)) // not in the record, which goes into jsonb too
			handle(t, s, batch)
			_, nacked := rec.results()
			want := `stage "store": record 1 refused: column "j" (field j): ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05): ` + nulDetail
			if err := nacked[1]; err == nil || err.Error() != want || stage.ErrorClass(err) != "database" {
				t.Fatalf("record 1 nacked with %v, want %s", err, want)
			}
		})
	}
}

// A record alone in its batch whose text is not UTF-8, or holds a NUL,
// is refused under method insert naming its column and field, as COPY's
// context names it and as the search words a record found in a batch.
// PostgreSQL's 22021 under insert names no column (its parameters are
// text arrays, read before any column is looked at).
func TestInvalidUTF8AloneUnderInsertNamesColumn(t *testing.T) {
	dsn := pg.NewDatabase(t)
	exec(t, connect(t, dsn), "CREATE TABLE events (id bigint PRIMARY KEY, msg text, note text, body jsonb)")
	s := startSink(t, config(dsn, map[string]any{"create": false, "method": "insert",
		"columns": [][2]string{{"id", "id"}, {"msg", "msg"}, {"note", "note"}, {"body", "$"}}}))
	for i, c := range []struct{ note, want string }{
		{"f\xfcr", `column "note" (field note): ERROR: invalid byte sequence for encoding "UTF8": 0xfc (SQLSTATE 22021)`},
		{"nul\x00byte", `column "note" (field note): ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`},
	} {
		rec := &recorder{}
		ev := record(rec, uint64(i), i, map[string]any{"msg": "fine", "note": c.note})
		handle(t, s, []*stage.Event{ev})
		_, nacked := rec.results()
		want := fmt.Sprintf(`stage "store": record %d refused: %s`, i, c.want)
		if err := nacked[uint64(i)]; err == nil || err.Error() != want || stage.ErrorClass(err) != "database" {
			t.Errorf("record %d nacked with %v, want %s", i, err, want)
		}
	}
}
