package pipeline

// This file tests /readyz, /stats and /metrics while a sink is down, and
// once it is back.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// A sink whose calls fail (it retries a write that finds the database
// gone, reporting each attempt) is down: /readyz answers 503 naming the
// stage and its error, /stats and /metrics say down; once its calls
// succeed again the pipeline is ready.
func TestReadyzWhileStageDown(t *testing.T) {
	reg, hub := rtRegistry(t)
	if err := reg.Register(stage.Kind{Name: "test.outage", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
				for {
					select {
					case <-hub.gate:
						stage.ReportAttempt(ctx, nil)
						stage.DoneAll(b, nil)
						return nil
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(5 * time.Millisecond): // the retry's backoff
					}
					stage.ReportAttempt(ctx, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"))
				}
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	cfg := rtConfig(
		rtStage("src", "test.seq", "store", stage.Settings{}, map[string]any{"count": 5}),
		rtStage("store", "test.outage", "", stage.Settings{Workers: 1}, nil),
	)
	cfg.Name = "ingest"
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := rtClient(t)
	base := "http://" + p.AdminAddr()
	var code int
	var body string
	poll.Until(t, "/readyz 503", func() bool { code, body = rtGet(t, c, base+"/readyz", ""); return code == 503 })
	if !strings.Contains(body, "stage store down since") || !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz: %q, want the stage, since when and its error", body)
	}
	_, raw := rtGet(t, c, base+"/stats", "")
	if !strings.Contains(raw, `"health":{"state":"down","since":"`) || !strings.Contains(raw, `"error":"dial tcp`) {
		t.Errorf("/stats lacks the store's health: %s", raw)
	}
	_, metrics := rtGet(t, c, base+"/metrics", "")
	for _, line := range []string{
		`pipeline_stage_health{pipeline="ingest",stage="store",state="down"} 1`,
		`pipeline_stage_health{pipeline="ingest",stage="store",state="ok"} 0`,
		`pipeline_stage_health{pipeline="ingest",stage="src",state="ok"} 1`,
		`pipeline_stage_call_failures_total{pipeline="ingest",stage="store"} `,
		`pipeline_stage_oldest_event_seconds{pipeline="ingest",stage="store"} `,
	} {
		if !strings.Contains(metrics, "\n"+line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if st, _ := p.StageStats("src"); st.Latency.OldestMs <= 0 {
		t.Errorf("the source's oldest unfinished event: %.1f ms, want its age", st.Latency.OldestMs)
	}
	close(hub.gate)
	poll.Until(t, "/readyz 200", func() bool { code, _ = rtGet(t, c, base+"/readyz", ""); return code == 200 })
	rtStop(t, p)
}
