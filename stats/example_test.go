package stats_test

// This file is the package's examples: decoding GET /stats, and Fates.

import (
	"encoding/json"
	"fmt"

	"github.com/stagedserver/seda/stats"
)

// A client of GET /stats decodes the stages with this package alone: it
// imports nothing of the runtime. A stage whose queue a transport carries
// keeps the transport's figures, undecoded, in Transport.
func Example() {
	body := `{"pipeline": "orders", "state": "running", "stages": [
	  {"name": "parse", "kind": "process.json",
	   "queue": {"depth": 12, "capacity": 8192, "overflow": "block", "bytes": 3072},
	   "pool": {"workers": 2, "concurrency": 2, "running": 2},
	   "in": 1200, "out": 1188, "latency_ms": {"p50": 0.2, "p99": 1.5},
	   "health": {"state": "ok"}},
	  {"name": "store", "kind": "db.postgres",
	   "queue": {"depth": 40, "capacity": 8192, "overflow": "block", "transport": "nats", "stream": "orders_store"},
	   "pool": {"workers": 4, "concurrency": 2, "running": 1, "blocked": 3},
	   "in": 1188, "out": 1100, "latency_ms": {"p50": 3.1, "p99": 12},
	   "health": {"state": "degraded", "error": "retrying a batch: connection refused"},
	   "nats": {"pending": 28, "ack_pending": 12}}
	]}`
	var doc struct {
		Stages []stats.Stage `json:"stages"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range doc.Stages {
		fmt.Printf("%s: %d of %d queued, p99 %.1f ms, %s\n",
			st.Name, st.Queue.Depth, st.Queue.Capacity, st.Latency.P99, st.Health.State)
		if st.Health.State != stats.HealthOK {
			fmt.Printf("  why: %s\n", st.Health.Error)
		}
		if raw, ok := st.Transport.(json.RawMessage); ok {
			fmt.Printf("  %s: %s\n", st.Queue.Transport, raw)
		}
	}
	// Output:
	// parse: 12 of 8192 queued, p99 1.5 ms, ok
	// store: 40 of 8192 queued, p99 12.0 ms, degraded
	//   why: retrying a batch: connection refused
	//   nats: {"pending": 28, "ack_pending": 12}
}

// The shutdown report counts what became of the events in flight.
func ExampleFates() {
	before := stats.Fates{Stored: 1000, Resend: 2}
	after := stats.Fates{Stored: 1200, Lost: 3, Resend: 19}
	fmt.Println(after.Sub(before))
	fmt.Println(after.Sub(before).Total(), "events")
	// Output:
	// 200 stored, 0 redelivered later (NATS), 3 lost (ack: none), 17 left for clients to resend
	// 220 events
}
