package db

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// TestFailedBatchNamesStageOnce: a batch Handle fails (the table dropped
// under the sink, retried until retry.max is used up) is failed by the
// engine, which names the stage in the reason its events get; the sink
// does not name it again.
func TestFailedBatchNamesStageOnce(t *testing.T) {
	dsn := pg.NewDatabase(t)
	sink := newSink(t, config(dsn, map[string]any{"retry": stage.NewConfig(map[string]any{
		"max": 1, "backoff": time.Millisecond, "max_backoff": 2 * time.Millisecond})}), nil)
	st, l := engine.NewHandlerStage(stage.Settings{Name: "store", Kind: Kind, Terminal: true, Workers: 1, Batch: 1}, sink, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the engine starts the sink
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	up, upL := engine.NewSourceStage(stage.Settings{Name: "up"}, nil, nil)
	upL.Connect(st, nil)
	exec(t, connect(t, dsn), "DROP TABLE events")
	rec := &recorder{}
	em := up.NewEmitter()
	if err := em.Emit(ctx, recordOn(up, rec, 1, json.Number("1"), nil)); err != nil {
		t.Fatal(err)
	}
	em.Flush(ctx)
	poll.Until(t, "the record to be failed", func() bool { _, nacked := rec.results(); return len(nacked) == 1 })
	l.CloseQueue()
	l.Wait()
	_, nacked := rec.results()
	msg := nacked[1].Error()
	if n := strings.Count(msg, `stage "store"`); n != 1 || !strings.Contains(msg, "events") {
		t.Fatalf("reason %q names the stage %d times, want once", msg, n)
	}
}
