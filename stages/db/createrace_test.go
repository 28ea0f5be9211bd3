package db

// This file tests Start against what the table's name names: sinks
// creating the table at once all start, and a type, a view or a sequence
// is no table (method insert may write through a view).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/stage"
)

// Sinks of several processes start at once against a database where
// their table does not exist yet (the backs of a split pipeline, each
// with create: true): every one starts, whichever created the table.
// PostgreSQL's CREATE TABLE IF NOT EXISTS does not cover the race; the
// loser gets 23505 (pg_type's index), 42P07, or 42710 (the table's row
// type found committed after its name was not).
func TestSinksCreateTheTableAtOnce(t *testing.T) {
	dsn := pg.NewDatabase(t)
	const tables, sinks = 40, 6
	for i := range tables {
		name := fmt.Sprintf("events_%d", i)
		var wg sync.WaitGroup
		errs := make([]error, sinks)
		all := make([]*Sink, sinks)
		for k := range sinks {
			s, err := build(config(dsn, map[string]any{"table": name, "on_start": "fail"}), stage.Env{Stage: "store"})
			if err != nil {
				t.Fatal(err)
			}
			all[k] = s
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				errs[k] = s.Start(ctx)
			})
		}
		wg.Wait()
		for _, s := range all {
			_ = s.Close()
		}
		for k, err := range errs {
			if err != nil {
				t.Errorf("table %s, sink %d: %v", name, k, err)
			}
		}
	}
}

// A type of the table's name that is no relation (an enum made by hand)
// is not a table made by another sink at the same time: create: true
// fails with PostgreSQL's error.
func TestCreateTableOverATypeFails(t *testing.T) {
	dsn := pg.NewDatabase(t)
	c := connect(t, dsn)
	if _, err := c.Exec(context.Background(), "CREATE TYPE events AS ENUM ('a')"); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, config(dsn, map[string]any{"on_start": "fail"}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), `create table "events"`) || sqlState(err) != "42710" {
		t.Fatalf("Start: %v; want create table's 42710", err)
	}
}

// A relation of the table's name that is not a table (a composite type,
// a view) is said to be what it is, not a table with its columns
// missing.
func TestTableThatIsNoTable(t *testing.T) {
	dsn := pg.NewDatabase(t)
	c := connect(t, dsn)
	for _, tc := range []struct{ name, sql, want string }{
		{"t_type", "CREATE TYPE t_type AS (host text, app text)", `"t_type" is a composite type, not a table`},
		{"t_view", "CREATE VIEW t_view AS SELECT 'h'::text AS host", `"t_view" is a view, not a table`},
		{"t_seq", "CREATE SEQUENCE t_seq", `"t_seq" is a sequence, not a table`},
	} {
		if _, err := c.Exec(context.Background(), tc.sql); err != nil {
			t.Fatal(err)
		}
		s := newSink(t, config(dsn, map[string]any{"table": tc.name, "create": false, "on_start": "fail"}), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.Start(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start over %s: %v; want %q", tc.name, err, tc.want)
		}
	}

	// With method insert, a view PostgreSQL can update takes the rows.
	if _, err := c.Exec(context.Background(), "CREATE TABLE t_base (id bigint, body jsonb); CREATE VIEW t_into AS SELECT id, body FROM t_base"); err != nil {
		t.Fatal(err)
	}
	s := startSink(t, config(dsn, map[string]any{"table": "t_into", "create": false, "key": nil, "method": "insert", "on_start": "fail"}))
	rec := &recorder{}
	handle(t, s, batchOf(rec, 1, 3))
	if acked, nacked := rec.results(); acked != 2 || len(nacked) > 0 {
		t.Fatalf("insert through a view: acked %d, nacked %v; want 2 acked", acked, nacked)
	}
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM t_base").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows through the view: %d, %v; want 2", n, err)
	}
}
