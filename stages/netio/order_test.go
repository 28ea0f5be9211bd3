package netio_test

// This file tests that a connection's records reach the next stage in the
// order they were read, whichever worker frames each read.

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A connection's records reach the next stage's queue in the order they
// were read, whichever of the source's workers frames each read: a read's
// events are emitted and flushed before the connection's next read is
// issued. shard_by downstream relies on it (per-key order holds from the
// client on). The sink has one worker, so it sees its queue's order; the
// small read buffer makes each connection's records span many reads,
// framed by four workers.
func TestRecordsReachTheNextStageInConnectionOrder(t *testing.T) {
	var mu sync.Mutex
	seqs := map[uint64][]uint64{} // connection -> record numbers in queue order
	src, err := newSource(netio.Kind, listening(map[string]any{"read_buffer": int64(256)}))
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 4, Concurrency: 4, Capacity: 64},
		stage.Settings{Workers: 1, Batch: 7, Capacity: 32},
		func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
			mu.Lock()
			for _, ev := range b {
				seqs[ev.Origin.Key] = append(seqs[ev.Origin.Key], ev.Seq)
			}
			mu.Unlock()
			stage.DoneAll(b, nil)
			return nil
		})
	r.src = src.(*netio.Source)
	const conns, records = 16, 2000
	var wg sync.WaitGroup
	for i := range conns {
		c := r.dial(wire.Lines, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= records; n++ {
				if _, err := c.Send(fmt.Appendf(nil, `{"conn":%d,"n":%d}`, i, n)); err != nil {
					t.Error(err)
					return
				}
				if n%(10+i) == 0 {
					c.Flush()
				}
			}
			if err := c.Flush(); err != nil {
				t.Error(err)
				return
			}
			if err := c.WaitTimeout(wait); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != conns {
		t.Fatalf("records of %d connections, want %d", len(seqs), conns)
	}
	for key, s := range seqs {
		if len(s) != records {
			t.Fatalf("connection %d: %d records, want %d", key, len(s), records)
		}
		for i, n := range s {
			if n != uint64(i+1) {
				t.Fatalf("connection %d: record %d reached the queue in place %d", key, n, i+1)
			}
		}
	}
}
