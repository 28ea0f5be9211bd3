package codec_test

// This file is the package's example: two events packed into one
// compressed envelope and read back.

import (
	"fmt"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// Two events packed into one compressed envelope, and read back.
func Example() {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	b := codec.NewBuilder(1024, 256<<10, 256<<10, true, nil)
	for i, rec := range []string{`{"id":1}`, `{"id":2}`} {
		ev := src.NewEvent([]byte(rec), uint64(i+1), stage.Origin{})
		ev.SetValue("id", stage.IntValue(int64(i+1)))
		b.Add(ev)
		defer ev.Done(nil)
	}
	data, trace, _ := b.Take("ingest", "ingest/host/1")
	plain, at, err := codec.Open(data, nil, 64<<20, 1<<20, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range len(at) - 1 {
		seq, payload, _ := codec.RecordHead(plain[at[i]:at[i+1]])
		fmt.Printf("record %d: %s\n", seq, payload)
	}
	tr, _ := codec.ParseTrace(trace)
	fmt.Println("version", data[0], "events", tr.Events, "from", tr.Publisher)
	// Output:
	// record 1: {"id":1}
	// record 2: {"id":2}
	// version 4 events 2 from ingest/host/1
}
