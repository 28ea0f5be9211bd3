package stats

// This file tests how stage figures travel as JSON (a transport's
// figures, NaN quantiles) and Health's Worsen.

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// A transport's figures travel under the transport's name, and come
// back as the raw JSON found there.
func TestTransportFiguresUnderTheirName(t *testing.T) {
	type figures struct {
		Pending uint64 `json:"pending"`
	}
	st := Stage{Name: "store", Kind: "db.postgres", Queue: Queue{Transport: "nats", Stream: "s"},
		Transport: figures{Pending: 7}, Series: []Series{{Name: "x", Value: 1}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), `,"nats":{"pending":7}}`) || strings.Contains(string(b), `"x"`) {
		t.Fatalf("encoded: %s", b)
	}
	var back Stage
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	raw, ok := back.Transport.(json.RawMessage)
	if !ok || string(raw) != `{"pending":7}` || back.Name != "store" || back.Queue.Stream != "s" {
		t.Fatalf("decoded: %+v", back)
	}

	// Without a transport nothing is added, and a local queue's JSON has
	// no transport key.
	b, err = json.Marshal(Stage{Name: "a", Transport: figures{}})
	if err != nil || strings.Contains(string(b), "pending") || strings.Contains(string(b), "transport") {
		t.Fatalf("local queue encoded as %s (%v)", b, err)
	}
}

// A quantile without observations (NaN) travels as null and comes back as
// NaN; encoding/json would refuse the NaN itself.
func TestLatencyNaNIsNull(t *testing.T) {
	b, err := json.Marshal(Stage{Name: "store", Latency: Latency{P50: math.NaN(), P99: math.NaN(), OldestMs: 1500}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency_ms":{"p50":null,"p99":null,"oldest_ms":1500}`) {
		t.Fatalf("encoded: %s", b)
	}
	var back Stage
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if l := back.Latency; !math.IsNaN(l.P50) || !math.IsNaN(l.P99) || l.OldestMs != 1500 {
		t.Fatalf("decoded: %+v", l)
	}
	b, err = json.Marshal(Latency{P50: 0.5, P99: 2})
	if err != nil || string(b) != `{"p50":0.5,"p99":2,"oldest_ms":0}` {
		t.Fatalf("encoded: %s (%v)", b, err)
	}
	var l Latency
	if err := json.Unmarshal([]byte(`{"p50":0.5,"oldest_ms":3}`), &l); err != nil || l.P50 != 0.5 || !math.IsNaN(l.P99) || l.OldestMs != 3 {
		t.Fatalf("decoded with p99 missing: %+v (%v), want p50 0.5, p99 NaN", l, err)
	}
}

// Worsen only ever makes a health worse: down over degraded over ok.
func TestHealthWorsen(t *testing.T) {
	at := time.Unix(1000, 0)
	h := Health{}
	h.Worsen(HealthDegraded, at, "slow")
	h.Worsen(HealthOK, at.Add(time.Second), "fine")
	if h.State != HealthDegraded || h.Error != "slow" || !h.Since.Equal(at) {
		t.Fatalf("degraded, then ok: %+v, want degraded since %v for slow", h, at)
	}
	h.Worsen(HealthDown, at.Add(2*time.Second), "gone")
	h.Worsen(HealthDegraded, at.Add(3*time.Second), "slow again")
	if h.State != HealthDown || h.Error != "gone" {
		t.Fatalf("down, then degraded: %+v, want down for gone", h)
	}
}
