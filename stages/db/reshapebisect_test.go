package db

// This file tests a column that changes type while a batch is being
// bisected around rows PostgreSQL refuses: the halves left are written
// for the new type.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
)

// attemptHook is a health tracker that calls f with each write's outcome
// (stage.ReportAttempt).
type attemptHook struct{ f func(error) }

func (a *attemptHook) Attempt(err error) { a.f(err) }

// TestColumnTypeChangedWhileBisecting: a batch whose write a trigger
// refuses (rows 2 and 5, 22023: a data exception, which might also be a
// changed column type) has the table read, and finds it unchanged. Once
// the first half of its bisection has committed, column c is altered to
// bigint. Before, the batch never read the table again: the halves left
// failed on the old layout, COPY's binary format with 08P01, retried
// until retry.max ("3 rows not stored after 50 retries"), method insert
// and an upsert with 42804, failing the batch. Now each write after one
// that committed looks again, and the rows left are encoded for bigint.
func TestColumnTypeChangedWhileBisecting(t *testing.T) {
	for _, v := range reshapeVariants {
		if v.text { // COPY's text format takes "7" for bigint as for text
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			s, count, exec := reshapeSink(t, v.method, v.conflict, v.text)
			exec(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.id IN (2, 5) THEN RAISE EXCEPTION 'row % is bad', NEW.id USING ERRCODE = '22023'; END IF; RETURN NEW; END $$`)
			exec("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
			rec := &recorder{}
			var batch []*stage.Event
			for id := range 10 {
				batch = append(batch, reshapeRecord(rec, id, id, "7"))
			}
			var altered atomic.Bool
			hook := &attemptHook{func(err error) {
				if err == nil && altered.CompareAndSwap(false, true) {
					exec("ALTER TABLE events ALTER COLUMN c TYPE bigint USING c::bigint")
				}
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := s.Handle(context.WithValue(ctx, track.HealthKey{}, hook), batch, nil); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if !altered.Load() {
				t.Fatal("no write committed before the batch ended: the column was never altered")
			}
			acked, nacked := rec.results()
			if acked != 8 || len(nacked) != 2 || nacked[2] == nil || nacked[5] == nil {
				t.Fatalf("acked %d, nacked %v; want 8 stored and records 2 and 5 refused", acked, nacked)
			}
			if n := count("SELECT count(*) FROM events WHERE c = 7"); n != 8 {
				t.Fatalf("%d rows with c = 7, want 8", n)
			}
		})
	}
}
