package db

// This file measures db.postgres's writes of 2000-row batches in rows per
// second: COPY, the idempotent path, and method insert.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// BenchmarkWrite stores 2000-row batches of ~90-byte JSON records into
// (id bigint primary key, body jsonb) and reports rows/s: the COPY path,
// the idempotent path (COPY into a temporary table, INSERT ... ON
// CONFLICT DO NOTHING) and method insert (INSERT ... SELECT FROM unnest).
func BenchmarkWrite(b *testing.B) {
	const batchSize = 2000
	for _, path := range []string{"copy", "idempotent", "insert"} {
		b.Run(path, func(b *testing.B) {
			dsn := pg.NewDatabase(b)
			method := "copy"
			if path == "insert" {
				method = "insert"
			}
			s, err := build(config(dsn, map[string]any{"method": method, "conflict": "ignore"}), stage.Env{Stage: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Start(ctx); err != nil {
				b.Fatal(err)
			}
			id := 0
			var payloadBytes int
			b.ResetTimer()
			for range b.N {
				batch := make([]*stage.Event, batchSize)
				for i := range batch {
					id++
					p := fmt.Appendf(nil, `{"id":%d,"host":"web-01","level":"info","msg":"user login ok","ts":1732560000123}`, id)
					payloadBytes = len(p)
					ev := src.NewEvent(p, uint64(id), stage.Origin{})
					ev.Set("id", json.Number(fmt.Sprint(id)))
					batch[i] = ev
				}
				r := s.bufs.Get().(*rows)
				r.reset(s.lay.Load(), s.insert)
				for _, ev := range batch {
					if err := s.addRow(r, ev); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.store(ctx, r, 0, len(r.evs), path == "idempotent"); err != nil {
					b.Fatal(err)
				}
				s.putRows(r)
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(payloadBytes), "record_bytes")
		})
	}
}
