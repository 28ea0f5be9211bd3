package db

// This file tests what looking for a changed column type costs: how often
// the table's column types are read again.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/stage"
)

// TestLocalRefusalReadsTypesOncePerSecond: batches each holding a value
// the sink refuses itself (n "x" for an integer column) read the table's
// column types once a second, not once a batch, on the sink's clock (a
// fake one here); a write PostgreSQL fails with a data exception still
// reads them within that second. Before, each of the five batches read
// them (under reshapeMu, one worker at a time).
func TestLocalRefusalReadsTypesOncePerSecond(t *testing.T) {
	s, _, exec := reshapeSink(t, "copy", "error", false)
	var clock atomic.Int64
	clock.Store(time.Now().Add(time.Hour).UnixNano())
	s.now = func() time.Time { return time.Unix(0, clock.Load()) }
	rec := &recorder{}
	id := 0
	write := func(bad int) {
		t.Helper()
		var batch []*stage.Event
		for i := range 5 {
			var n any = id
			if i == bad {
				n = "x"
			}
			batch = append(batch, reshapeRecord(rec, id, n, "c"))
			id++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.Handle(ctx, batch, nil); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	reads := func(want uint64, after string) {
		t.Helper()
		if n := s.shapeReads.Load(); n != want {
			t.Fatalf("%d reads of the column types after %s, want %d", n, after, want)
		}
	}
	for range 5 {
		write(0)
	}
	reads(1, "five batches with a value refused by the sink within a second")
	if acked, nacked := rec.results(); acked != 20 || len(nacked) != 5 {
		t.Fatalf("acked %d, nacked %d; want 20 stored and 5 refused", acked, len(nacked))
	}
	write(-1)
	reads(1, "a clean batch")

	clock.Add(int64(localRecheck))
	write(2)
	reads(2, "a batch with a refused value a second later")

	// A trigger's data exception might be a changed type: read at once.
	exec(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.c = 'no' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$`)
	exec("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Handle(ctx, []*stage.Event{reshapeRecord(rec, id, id, "c"), reshapeRecord(rec, id+1, id+1, "no")}, nil); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := s.shapeReads.Load(); n < 3 {
		t.Fatalf("%d reads of the column types after a write PostgreSQL refused with 22023, want more than 2", n)
	}
	if acked, nacked := rec.results(); acked != 30 || len(nacked) != 7 {
		t.Fatalf("acked %d, nacked %d; want 30 stored and 7 refused", acked, len(nacked))
	}
}
