package stats

import (
	"encoding/json"
	"strings"
	"testing"
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
