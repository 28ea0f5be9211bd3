package pipeline

// This file tests the admin endpoint: /stats and /metrics showing depth
// and shards, where it listens, its token and Host rules, a taken
// address, and its bound on connections.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// /stats and /metrics show the real depth of a queue held back by a gate.
func TestAdminStatsAndMetricsShowDepth(t *testing.T) {
	const n = 51 // one held by the only worker, 50 queued
	reg, hub := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "gated", stage.Settings{}, map[string]any{"count": n}),
		rtStage("gated", "test.gate", "mark", stage.Settings{Workers: 1, Concurrency: 1, Batch: 1, Capacity: 100}, nil),
		rtStage("mark", "test.pass", "end", stage.Settings{Inline: true}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	)
	cfg.Name = "ingest"
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)
	defer close(hub.gate) // before rtStop, which needs the gate open
	c := rtClient(t)
	base := "http://" + p.AdminAddr()

	var s Stats
	poll.Until(t, fmt.Sprintf("a queue of %d behind the gated worker", n-1), func() bool {
		code, body := rtGet(t, c, base+"/stats", "")
		if code != 200 {
			t.Fatalf("/stats: %d %s", code, body)
		}
		s = Stats{}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("/stats: %v in %s", err, body)
		}
		// The worker takes its run slot a moment before it counts the
		// event it took: wait for both.
		g := rtStageStats(t, s, "gated")
		return g.Queue.Depth == n-1 && g.In == 1
	})
	if s.Pipeline != "ingest" || s.State != "running" || s.UptimeS <= 0 {
		t.Errorf("stats header: %+v", s)
	}
	var names []string
	for _, st := range s.Stages {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, ","); got != "src,gated,mark,end" {
		t.Errorf("stages %s, want file order src,gated,mark,end", got)
	}
	g := rtStageStats(t, s, "gated")
	if g.Kind != "test.gate" || g.Queue.Capacity != 100 || g.Queue.Overflow != "block" ||
		g.Pool.Workers != 1 || g.Pool.Concurrency != 1 || g.Pool.Running != 1 || g.In != 1 {
		t.Errorf("gated stage: %+v", g)
	}
	if m := rtStageStats(t, s, "mark"); !m.Inline || m.Queue.Capacity != 0 {
		t.Errorf("inline stage: %+v", m)
	}

	// The JSON has the shape DESIGN.md shows.
	_, raw := rtGet(t, c, base+"/stats", "")
	for _, key := range []string{`"pipeline":"ingest"`, `"uptime_s":`, `"state":"running"`, `"stages":[`,
		`"queue":{"depth":50,"capacity":100,"overflow":"block","bytes":0}`, `"pool":{"workers":1,"concurrency":1,"running":1`,
		`"latency_ms":{"p50":null,"p99":null,"oldest_ms":`, `"inline":true`, `"in":`, `"out":`, `"errors":`, `"rejected":`,
		`"source":{"connections":{"accepted":7,"closed":5,"refused":1},"protocol_errors":{"bad_frame":2},` +
			`"nacks":{"busy":4,"invalid":3,"too_large":0,"database":0,"other":0},"bytes_in":1234,` +
			`"drops":{"queue_full":0,"oversized":6,"socket_overrun":0,"memory_limit":0}}`,
		`"memory":{"limit_bytes":`} {
		if !strings.Contains(raw, key) {
			t.Errorf("/stats lacks %s: %s", key, raw)
		}
	}

	code, metrics := rtGet(t, c, base+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range []string{
		`pipeline_stage_queue_depth{pipeline="ingest",stage="gated"} 50`,
		`pipeline_stage_queue_capacity{pipeline="ingest",stage="gated"} 100`,
		`pipeline_stage_workers{pipeline="ingest",stage="gated"} 1`,
		`pipeline_stage_running{pipeline="ingest",stage="gated"} 1`,
		`pipeline_stage_blocked{pipeline="ingest",stage="gated"} 0`,
		`pipeline_stage_events_in_total{pipeline="ingest",stage="gated"} 1`,
		`pipeline_stage_events_out_total{pipeline="ingest",stage="gated"} 0`,
		`pipeline_stage_errors_total{pipeline="ingest",stage="gated"} 0`,
		`pipeline_stage_rejected_total{pipeline="ingest",stage="gated"} 0`,
		// Nothing has finished at end: no latency, NaN as Prometheus has a
		// summary's quantile without observations, not a 0 that reads as
		// fast and quiets an alert while a stage is stalled.
		`pipeline_stage_latency_seconds{pipeline="ingest",quantile="0.5",stage="end"} NaN`,
		`pipeline_stage_latency_seconds{pipeline="ingest",quantile="0.99",stage="end"} NaN`,
		`pipeline_stage_queue_depth{pipeline="ingest",stage="mark"} 0`,
		`pipeline_source_connections_total{event="accepted",pipeline="ingest",stage="src"} 7`,
		`pipeline_source_protocol_errors_total{cause="bad_frame",pipeline="ingest",stage="src"} 2`,
		`pipeline_source_nacks_total{class="invalid",pipeline="ingest",stage="src"} 3`,
		`pipeline_source_bytes_in_total{pipeline="ingest",stage="src"} 1234`,
		`pipeline_source_drops_total{pipeline="ingest",reason="oversized",stage="src"} 6`,
		`pipeline_uptime_seconds{pipeline="ingest"} `,
		`pipeline_memory_limit_bytes{pipeline="ingest"} `,
		`pipeline_memory_held_bytes{pipeline="ingest"} `,
		`pipeline_memory_refused_total{pipeline="ingest"} 0`,
		`pipeline_stage_queue_bytes{pipeline="ingest",stage="gated"} `,
		`pipeline_source_drops_total{pipeline="ingest",reason="memory_limit",stage="src"} 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(metrics, "\n"+line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if code, _ := rtGet(t, c, base+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := rtGet(t, c, base+"/readyz", ""); code != 200 || strings.TrimSpace(body) != "running" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := rtGet(t, c, base+"/nope", ""); code != 404 {
		t.Errorf("/nope: %d", code)
	}

	// The dashboard: every stage, the graph, the figures, its own assets.
	code, page := rtGet(t, c, base+"/", "")
	if code != 200 {
		t.Fatalf("/: %d %s", code, page)
	}
	for _, want := range []string{`<svg id="graph"`, `data-node="gated"`, `href="/metrics"`, `href="/stats"`, `href="/healthz"`,
		`<tr data-stage="src"`, `<tr data-stage="gated"`, `<tr data-stage="mark" class="inline"`, `<tr data-stage="end"`,
		`<span data-field="depth">50</span> / <span data-field="capacity">100</span>`, `<span data-field="in">1</span>`,
		`<span data-field="out">0</span>`, `<span data-field="p99">–</span>`, `src="/dashboard/dashboard.js"`} {
		if !strings.Contains(page, want) {
			t.Errorf("/ lacks %s", want)
		}
	}
	for _, external := range []string{"http://", "https://", "//fonts", "@import"} {
		if i := strings.Index(page, external); i >= 0 && !strings.Contains(page[i:], "http://www.w3.org") {
			t.Errorf("/ refers to another origin: %q", page[i:min(len(page), i+60)])
		}
	}
	for _, asset := range []string{"/dashboard/dashboard.js", "/dashboard/dashboard.css"} {
		code, body := rtGet(t, c, base+asset, "")
		if code != 200 || len(body) < 100 || strings.Contains(body, "https://") {
			t.Errorf("%s: %d, %d bytes", asset, code, len(body))
		}
	}
	code, body := rtGet(t, c, base+"/history", "")
	var h struct {
		History []struct {
			T     int64      `json:"t"`
			Depth []int      `json:"depth"`
			P99   []*float64 `json:"p99"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil || len(h.History) == 0 || len(h.History[0].Depth) != 4 {
		t.Errorf("/history: %d %v: %s", code, err, body)
	} else if p99 := h.History[0].P99; len(p99) != 4 || p99[3] != nil {
		t.Errorf("/history: end's p99 with nothing finished is not null: %s", body)
	}
}

// Without a token the admin endpoint binds loopback only.
func TestAdminRefusesNonLoopbackWithoutToken(t *testing.T) {
	reg, _ := rtRegistry(t)
	for _, addr := range []string{"0.0.0.0:9464", ":9464", "[::]:9464", "192.0.2.1:9464", "example.com:9464"} {
		cfg := rtConfig(rtStage("a", "test.finish", "", stage.Settings{}, nil))
		cfg.Admin.Listen = addr
		_, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", addr)) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s without a token: %v, want a refusal naming the address", addr, err)
		}
		// The override is checked too.
		cfg.Admin.Listen = ""
		if _, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop(), AdminListen: addr}); err == nil {
			t.Errorf("%s as Options.AdminListen without a token was accepted", addr)
		}
		cfg.Admin = AdminConfig{Listen: addr, Token: "t0ken"}
		p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
		if err != nil {
			t.Errorf("%s with a token: %v", addr, err)
			continue
		}
		if _, err := p.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}
	// From a file, the refusal points at admin.listen's line and column.
	cfg, err := Parse("p.yaml", []byte("name: t\nadmin:\n  listen: 0.0.0.0:9464\nstages:\n  a: {kind: test.finish}\n"), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()}); err == nil || !strings.HasPrefix(err.Error(), "p.yaml:3:11: ") {
		t.Errorf("from a file: %v, want it at p.yaml:3:11", err)
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "127.3.4.5:0"} {
		cfg := rtConfig(rtStage("a", "test.finish", "", stage.Settings{}, nil))
		cfg.Admin.Listen = addr
		p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop()})
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		if _, err := p.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// Without a token the endpoint answers only requests whose Host names a
// loopback address or localhost: a web page whose name DNS rebinding
// points at 127.0.0.1 is same-origin with it, and could otherwise read
// /stats and resize stages (its POST of application/json needs no
// preflight then).
func TestAdminWithoutTokenAnswersLoopbackHostsOnly(t *testing.T) {
	reg, _ := rtRegistry(t)
	cfg := rtConfig(rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil))
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)
	_, port, _ := net.SplitHostPort(p.AdminAddr())
	do := func(method, path, host, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+p.AdminAddr()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := rtClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"attacker.example:" + port, "attacker.example", "127.0.0.1.nip.io:" + port} {
		if code := do("GET", "/stats", host, ""); code != http.StatusMisdirectedRequest {
			t.Errorf("GET /stats with Host %s: %d, want 421", host, code)
		}
		if code := do("POST", "/stages/end/scale", host, `{"workers": 3}`); code != http.StatusMisdirectedRequest {
			t.Errorf("POST scale with Host %s: %d, want 421", host, code)
		}
	}
	if st := p.Stats(); rtStageStats(t, st, "end").Pool.Workers == 3 {
		t.Error("a request with a foreign Host resized the stage")
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "127.0.0.1", "LOCALHOST"} {
		if code := do("GET", "/stats", host, ""); code != http.StatusOK {
			t.Errorf("GET /stats with Host %s: %d, want 200", host, code)
		}
	}
}

// With a token every request must carry it; secrets never show in /stats.
func TestAdminToken(t *testing.T) {
	const token = "s3cret-token"
	reg, _ := rtRegistry(t)
	cfg := rtConfig(rtStage("db", "test.secret", "", stage.Settings{Workers: 1},
		map[string]any{"dsn": "postgres://app:hunter2@db.internal/events"}))
	cfg.Admin = AdminConfig{Listen: "127.0.0.1:1", Token: token}
	p, err := New(cfg, Options{Registry: reg, Logger: zap.NewNop(), AdminListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)
	c := rtClient(t)
	base := "http://" + p.AdminAddr()
	if strings.HasSuffix(base, ":1") {
		t.Fatalf("Options.AdminListen did not override: %s", base)
	}
	// A refused client's connection is closed, not kept alive to hold
	// one of the endpoint's connections.
	keep := &http.Transport{} // keeps connections alive, unlike rtClient's
	defer keep.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: keep, Timeout: time.Minute}).Get(base + "/stats"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 401 || !resp.Close {
			t.Errorf("/stats without a token: %d, connection kept alive %v; want 401 and the connection closed", resp.StatusCode, !resp.Close)
		}
	}
	for _, path := range []string{"/stats", "/metrics", "/healthz", "/readyz"} {
		if code, _ := rtGet(t, c, base+path, ""); code != 401 {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
		if code, _ := rtGet(t, c, base+path, token+"x"); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		code, body := rtGet(t, c, base+path, token)
		if code != 200 {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
		if strings.Contains(body, "hunter2") || strings.Contains(body, token) {
			t.Errorf("%s shows a secret", path)
		}
	}

	// A browser gets a form for the token at /, and after POST /login a
	// cookie that opens the dashboard and what it polls.
	if code, body := rtGet(t, c, base+"/", ""); code != 401 || !strings.Contains(body, `<form method="post" action="/login">`) ||
		strings.Contains(body, `data-stage=`) {
		t.Errorf("/ without a token: %d, want 401 and a form, no figures: %s", code, body)
	}
	if code, _ := rtGet(t, c, base+"/dashboard/dashboard.js", ""); code != 401 {
		t.Errorf("the dashboard's script without a token: %d, want 401", code)
	}
	login := func(tok string) *http.Response {
		t.Helper()
		resp, err := noRedirect.Post(base+"/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login(token + "x"); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("POST /login with a wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp := login(token)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("POST /login with the token: %d, cookies %v; want 303 and a cookie", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || strings.Contains(cookie.Value, token) {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, and not the token itself", cookie)
	}
	for _, path := range []string{"/", "/stats", "/history", "/dashboard/dashboard.js"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.AddCookie(cookie)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s with the cookie: %d, want 200", path, resp.StatusCode)
		}
	}
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// An admin address that is taken fails Start, which leaves nothing
// running.
func TestAdminListenFailure(t *testing.T) {
	reg, hub := rtRegistry(t)
	cfg := rtConfig(rtStage("a", "test.finish", "", stage.Settings{Workers: 1}, nil))
	cfg.Admin.Listen = "127.0.0.1:0"
	first := rtNew(t, cfg, reg)
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, first)
	cfg.Admin.Listen = first.AdminAddr()
	second := rtNew(t, cfg, reg)
	if err := second.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("Start on a taken address: %v", err)
	}
	if len(hub.starts) != 1 {
		t.Errorf("stages started: %v, want only the first pipeline's", hub.starts)
	}
}

// A stage with shard_by: /stats counts its mailboxes in the queue's depth
// and shows the key spread, which /metrics serves too. The events carry
// no key field, so all of them are one key (null): one shard takes
// everything, one worker holds it, the other moves the rest into its
// mailbox. That takes two run slots (concurrency 2): the default,
// GOMAXPROCS, is one on a one-core machine, where the second worker
// would wait for the slot the held event keeps.
func TestAdminShowsShards(t *testing.T) {
	const n = 21 // one held by a worker, 20 waiting in its shard
	reg, hub := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "gated", stage.Settings{}, map[string]any{"count": n}),
		rtStage("gated", "test.gate", "end", stage.Settings{Workers: 2, Concurrency: 2, Batch: 1, Capacity: 100, ShardBy: []string{"key"}}, nil),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	)
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)
	defer close(hub.gate)
	c := rtClient(t)
	base := "http://" + p.AdminAddr()
	var g Stats
	poll.Until(t, "the events in the shard's mailbox", func() bool {
		_, body := rtGet(t, c, base+"/stats", "")
		g = Stats{}
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			t.Fatalf("/stats: %v in %s", err, body)
		}
		st := rtStageStats(t, g, "gated")
		return st.In == 1 && st.Shards != nil && st.Shards.Queued == n-1
	})
	st := rtStageStats(t, g, "gated")
	if st.Queue.Depth != n-1 || st.Shards.Count != 256 || st.Shards.Held != 1 || st.Shards.Busiest != 1 ||
		len(st.Shards.By) != 1 || st.Shards.By[0] != "key" {
		t.Fatalf("gated: queue %+v shards %+v", st.Queue, st.Shards)
	}
	_, metrics := rtGet(t, c, base+"/metrics", "")
	if line := `pipeline_stage_shard_busiest_share{pipeline="test",stage="gated"} 1`; !strings.Contains(metrics, "\n"+line) {
		t.Errorf("/metrics lacks %q", line)
	}
}

// An endpoint with a token may listen off loopback, and then says at
// start that it speaks plain HTTP (a test listens on loopback only, so
// this checks the rule that decides it).
func TestAdminOffLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:9464": false, "[::1]:9464": false, "localhost:9464": false,
		":9464": true, "0.0.0.0:9464": true, "[::]:9464": true, "10.0.0.5:9464": true, "admin.internal:9464": true,
	} {
		if got := offLoopback(listen); got != want {
			t.Errorf("offLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

// The admin endpoint holds adminMaxConns connections at most: clients
// that open connections and keep them (idle after a request) cannot take
// every file descriptor of the process. The ones past the bound wait to
// be accepted and are served once others close; a refused client's
// connection (401) is closed, not kept alive.
func TestAdminBoundsConnections(t *testing.T) {
	reg, _ := rtRegistry(t)
	cfg := rtConfig(
		rtStage("src", "test.seq", "end", stage.Settings{}, map[string]any{"count": 1}),
		rtStage("end", "test.finish", "", stage.Settings{Workers: 1}, nil),
	)
	cfg.Admin.Listen = "127.0.0.1:0"
	p := rtNew(t, cfg, reg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rtStop(t, p)

	// Each connection sends a request and reads its answer, then stays
	// open (keep-alive), as an idle client's would.
	const extra = 16
	type answer struct {
		i   int
		err error
	}
	answers := make(chan answer, adminMaxConns+extra)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range adminMaxConns + extra {
		c, err := net.Dial("tcp", p.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		go func() {
			_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			if err == nil {
				var resp *http.Response
				if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					resp.Body.Close()
				}
			}
			answers <- answer{i, err}
		}()
	}
	served := map[int]bool{}
	take := func(n int) {
		for len(served) < n {
			a := <-answers
			if a.err != nil {
				t.Fatalf("connection %d: %v", a.i, a.err)
			}
			served[a.i] = true
		}
	}
	take(adminMaxConns)
	// The endpoint holds adminMaxConns open: the others wait to be
	// accepted, unanswered. (A bound on how long to look, not a timing:
	// with the limit none is answered however long one waits.)
	select {
	case a := <-answers:
		t.Fatalf("connection %d answered while %d others were held open (err %v); want it waiting", a.i, adminMaxConns, a.err)
	case <-time.After(200 * time.Millisecond):
	}
	// Close the ones served, and the ones that waited are taken and
	// served.
	for i := range served {
		conns[i].Close()
	}
	take(adminMaxConns + extra)
}
