package db

// This file tests that the buffers the Sink keeps in its pool stay small
// and hold none of a batch's values.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// TestPooledBuffersStaySmall: after a batch of large rows, the buffers the
// Sink keeps in its pool for the next batch are no larger than
// maxPooledBuf, and hold none of the batch's values: the pool is memory
// that memory_limit does not count.
func TestPooledBuffersStaySmall(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			s := startSink(t, config(dsn, map[string]any{"method": method}))
			var pooled []string // what was wrong with each *rows put back
			puts := 0
			testPutRows = func(r *rows) {
				puts++
				var held int
				for _, c := range r.cols {
					for _, v := range c[:cap(c)] {
						held += len(v.String)
					}
				}
				if cap(r.buf) > maxPooledBuf || cap(r.scratch) > maxPooledBuf || cap(r.kb) > maxPooledBuf || held > 0 {
					pooled = append(pooled, "too much")
				}
			}
			t.Cleanup(func() { testPutRows = nil })
			rec := &recorder{}
			big := strings.Repeat("x", 1<<20)
			var batch []*stage.Event
			for id := range 6 { // 6 MiB of rows, past maxPooledBuf
				batch = append(batch, record(rec, uint64(id), json.Number(string(rune('0'+id))), nil))
				batch[id].Payload = []byte(`{"pad":"` + big + `"}`)
			}
			handle(t, s, batch)
			if acked, nacked := rec.results(); acked != 6 || len(nacked) != 0 {
				t.Fatalf("acked %d nacked %v", acked, nacked)
			}
			if puts == 0 {
				t.Fatal("no *rows went back to the pool: the test checked nothing")
			}
			if len(pooled) != 0 {
				t.Fatalf("a buffer over %d bytes, or the batch's values, went back to the pool", maxPooledBuf)
			}
		})
	}
}
