package pipeline

// This file tests POST /stages/{name}/scale: pinning and releasing a
// running stage's knobs, bad requests, and the token.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

func rtPost(t *testing.T, c *http.Client, url, ctype, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// POST /stages/{name}/scale pins and releases a running stage's knobs;
// bad requests get the status that says why; the token rule is GET's.
func TestAdminScale(t *testing.T) {
	reg, _ := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "work", stage.Settings{}, map[string]any{"count": 0}),
		rtStage("work", "test.pass", "mark", stage.Settings{Concurrency: 2}, nil),
		rtStage("mark", "test.pass", "end", stage.Settings{Inline: true}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	)
	cfg.Name = "scale"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Token = "s3cret"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)
	c := rtClient(t)
	url := func(name string) string { return "http://" + p.AdminAddr() + "/stages/" + name + "/scale" }
	const js = "application/json"

	code, body := rtPost(t, c, url("work"), js, "s3cret", `{"workers": 5, "batch": 100, "concurrency": 3}`)
	if code != 200 {
		t.Fatalf("scale: %d %s", code, body)
	}
	var st stats.Stage
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pool.Workers != 5 || st.Pool.Concurrency != 3 || st.Control.Workers.Auto || st.Control.Batch.Auto || st.Control.Batch.Now != 100 {
		t.Fatalf("after pinning: pool %+v, control %+v %+v", st.Pool, st.Control.Workers, st.Control.Batch)
	}
	// /metrics says the same: the batch size and that both knobs are pinned.
	_, metrics := rtGet(t, c, "http://"+p.AdminAddr()+"/metrics", "s3cret")
	for _, want := range [][]string{
		{"pipeline_stage_batch_size{", `stage="work"`, "} 100"},
		{"pipeline_stage_knob_auto{", `knob="workers"`, `stage="work"`, "} 0"},
		{"pipeline_stage_knob_auto{", `knob="batch"`, `stage="work"`, "} 0"},
		{"pipeline_stage_knob_limit{", `bound="max"`, `knob="workers"`, `stage="work"`, "} 16"},
		{"pipeline_stage_control_decisions_total{", `stage="work"`, "} 3"},
	} {
		found := false
		for _, line := range strings.Split(metrics, "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("/metrics has no line with %q", want)
		}
	}
	code, body = rtPost(t, c, url("work"), js, "s3cret", `{"workers": "auto", "batch": "auto"}`)
	if code != 200 || !strings.Contains(body, `"workers":{"now":5,"auto":true`) || !strings.Contains(body, `"batch":{"now":100,"auto":true`) {
		t.Fatalf("handing back: %d %s", code, body)
	}

	for _, c2 := range []struct {
		name, ctype, token, body string
		code                     int
		says                     string
	}{
		{"work", js, "", `{"workers": 2}`, 401, "unauthorized"},
		{"nope", js, "s3cret", `{"workers": 2}`, 404, `stage "nope": no such stage`},
		{"mark", js, "s3cret", `{"workers": 2}`, 409, "no queue or pool of its own"},
		{"src", js, "s3cret", `{"batch": 2}`, 409, "no queue or pool of its own"},
		{"work", js, "s3cret", `{"workers": 0}`, 400, "workers 0: want 1 to 65536, or auto"},
		{"work", js, "s3cret", `{"concurrency": "auto"}`, 400, "concurrency has no controller"},
		{"work", js, "s3cret", `{"workers": "many"}`, 400, `want a whole number or "auto"`},
		{"work", js, "s3cret", `{"threads": 2}`, 400, `unknown field "threads"`},
		{"work", js, "s3cret", `{"WORKERS": 2}`, 400, `unknown field "WORKERS"`},
		{"work", js, "s3cret", `{"workers": 2, "workers": "auto"}`, 400, "workers given twice"},
		{"work", js, "s3cret", `{"workers": 2} {"batch": "x"}`, 400, "more after the object"},
		{"work", js, "s3cret", `{"workers": 2}garbage`, 400, "more after the object"},
		{"work", js, "s3cret", `[2]`, 400, "want a JSON object"},
		{"work", js, "s3cret", `{}`, 400, "name workers, concurrency or batch"},
		{"work", "text/plain", "s3cret", `{"workers": 2}`, 415, "application/json"},
		{"work", js, "s3cret", `{"workers": 2, "pad": "` + strings.Repeat("x", 8<<10) + `"}`, 413, "too large"},
	} {
		code, body := rtPost(t, c, url(c2.name), c2.ctype, c2.token, c2.body)
		if code != c2.code || !strings.Contains(body, c2.says) {
			t.Errorf("POST %s %.60s: %d %q, want %d saying %q", c2.name, c2.body, code, body, c2.code, c2.says)
		}
	}
	if _, err := p.Scale("work", Scale{Workers: Pin(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Scale("mark", Scale{Workers: Pin(2)}); !errors.Is(err, engine.ErrNotResizable) {
		t.Fatalf("inline: %v", err)
	}
}
