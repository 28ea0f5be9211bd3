package db

// This file tests that a table missing inside a function is retried as
// an outage rather than refused row by row: a partition's child made
// late, and a foreign table whose remote table was renamed.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
)

// heldWrite runs Handle on batch in the background with an attempt log,
// and waits until two tries have failed with code, no event finished and
// Handle not returned: the batch held as an outage. It returns Handle's
// result.
func heldWrite(t *testing.T, s *Sink, rec *recorder, batch []*stage.Event, code string) (<-chan error, *attemptLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	attempts := &attemptLog{}
	done := make(chan error, 1)
	acked0, nacked0 := rec.results()
	go func() { done <- s.Handle(context.WithValue(ctx, track.HealthKey{}, attempts), batch, nil) }()
	poll.Until(t, "two tries to fail with "+code, func() bool {
		select {
		case err := <-done:
			acked, nacked := rec.results()
			t.Fatalf("Handle returned during the outage: %v (acked %d, nacked %d)", err, acked-acked0, len(nacked)-len(nacked0))
		default:
		}
		n := 0
		for _, err := range attempts.get() {
			if err != nil && strings.Contains(err.Error(), "SQLSTATE "+code) {
				n++
			}
		}
		return n >= 2
	})
	if acked, nacked := rec.results(); acked != acked0 || len(nacked) != len(nacked0) {
		t.Fatalf("during the outage: %d acked, %d nacked, want none finished", acked-acked0, len(nacked)-len(nacked0))
	}
	return done, attempts
}

// TestLatePartitionChildHeld: a table partitioned the old way, a BEFORE
// INSERT trigger sending each row to events_<month> (EXECUTE
// format('INSERT INTO %I ...')), meets the new month's child not made yet
// (cron is late): every row of the batch fails with the trigger's 42P01.
// That is an outage, not 256 refusals: the batch is held, each failed
// try reported (the stage shows down), and once the child is made all
// 256 are stored and acked, none refused. A try is one write of the
// whole batch, never a bisection: the trigger runs at most once a try.
// With stop 43's rule for 42703 applied to 42P01, all 256 were refused in
// the first 210 ms and the stage showed ok.
func TestLatePartitionChildHeld(t *testing.T) {
	for _, method := range []string{"copy", "insert"} {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			exec(t, db, "CREATE SEQUENCE calls")
			exec(t, db, "CREATE TABLE events (id bigint, month text, body jsonb)")
			exec(t, db, `CREATE FUNCTION route() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					PERFORM nextval('calls');
					EXECUTE format('INSERT INTO %I SELECT ($1).*', 'events_' || NEW.month) USING NEW;
					RETURN NULL;
				END $$`)
			exec(t, db, "CREATE TRIGGER route BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION route()")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method, "key": nil, "types": nil,
				"columns": [][2]string{{"id", "id"}, {"month", "month"}, {"body", "$"}}}))
			rec := &recorder{}
			var batch []*stage.Event
			for i := range 256 {
				batch = append(batch, record(rec, uint64(i), json.Number(fmt.Sprint(i)), map[string]any{"month": "2027_01"}))
			}
			done, attempts := heldWrite(t, s, rec, batch, "42P01")
			// One write a try, each stopped by the trigger at its first
			// row: the first write, and one after each failure reported.
			calls := count(t, db, "SELECT last_value::int FROM calls")
			tries := len(attempts.get()) // read after calls: a try's write follows its report
			if calls > 1+tries {
				t.Fatalf("the trigger ran %d times for %d tries: a try bisected the batch", calls, tries)
			}
			exec(t, db, "CREATE TABLE events_2027_01 () INHERITS (events)")
			if err := <-done; err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if acked, nacked := rec.results(); acked != 256 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %d; want all 256 stored", acked, len(nacked))
			}
			if n := count(t, db, "SELECT count(*) FROM events_2027_01"); n != 256 {
				t.Fatalf("%d rows in the child, want 256", n)
			}
			if got := attempts.get(); got[len(got)-1] != nil {
				t.Fatalf("the last try reported %v, want its success", got[len(got)-1])
			}
		})
	}
}

// TestForeignTableRemoteRenamedHeld: the sink's table is a postgres_fdw
// foreign table, and the remote table is renamed. The 42P01 is the sink's
// own statement's, but postgres_fdw gives it a context ("remote SQL
// command: ..."), so it looks raised inside a function. Every row fails
// alike and none stored: the batch is held as an outage until the rename
// back, then all stored. Before, all 100 were refused.
func TestForeignTableRemoteRenamedHeld(t *testing.T) {
	for _, method := range []string{"insert", "copy"} {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			remote := pg.NewDatabase(t)
			rc, err := pgx.ParseConfig(remote)
			if err != nil {
				t.Fatal(err)
			}
			rdb := connect(t, remote)
			exec(t, rdb, "CREATE TABLE events_remote (id bigint, body jsonb)")
			db := connect(t, dsn)
			exec(t, db, "CREATE EXTENSION postgres_fdw") // Debian's postgresql-15 ships it: failing here is a failure
			exec(t, db, fmt.Sprintf("CREATE SERVER rs FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %s, port '%d', dbname %s)",
				quoteLiteral(rc.Host), rc.Port, quoteLiteral(rc.Database)))
			exec(t, db, fmt.Sprintf("CREATE USER MAPPING FOR CURRENT_USER SERVER rs OPTIONS (user %s, password %s)",
				quoteLiteral(rc.User), quoteLiteral(rc.Password)))
			exec(t, db, "CREATE FOREIGN TABLE events (id bigint, body jsonb) SERVER rs OPTIONS (table_name 'events_remote')")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": method, "key": nil}))
			rec := &recorder{}
			handle(t, s, batchOf(rec, 0, 5))
			if n := count(t, rdb, "SELECT count(*) FROM events_remote"); n != 5 {
				t.Fatalf("the remote table has %d rows, want 5", n)
			}
			exec(t, rdb, "ALTER TABLE events_remote RENAME TO events_remote_old")
			done, _ := heldWrite(t, s, rec, batchOf(rec, 5, 105), "42P01")
			exec(t, rdb, "ALTER TABLE events_remote_old RENAME TO events_remote")
			if err := <-done; err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if acked, nacked := rec.results(); acked != 105 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %d; want all 105 stored", acked, len(nacked))
			}
			if n := count(t, rdb, "SELECT count(*) FROM events_remote"); n != 105 {
				t.Fatalf("the remote table has %d rows, want 105", n)
			}
		})
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
