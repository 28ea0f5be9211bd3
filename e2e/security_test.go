package e2e

// This file tests the admin endpoint's guards (no token off loopback, the
// token on every path) and that a DSN's password is never shown.

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
)

// TestAdminRefusesNonLoopbackWithoutToken: New refuses an admin endpoint
// on every interface unless a token guards it.
func TestAdminRefusesNonLoopbackWithoutToken(t *testing.T) {
	reg := registry(t)
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		cfg := parse(t, reg, strings.Replace(ingest("", storeDefaults), "stages:", "admin: {listen: \""+listen+"\"}\nstages:", 1),
			map[string]string{"DSN": "postgres://u@127.0.0.1:1/db"})
		p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
		if err == nil {
			p.Stop(context.Background())
			t.Errorf("admin on %s without a token: New succeeded", listen)
			continue
		}
		t.Logf("admin on %s: %v", listen, err)
		if !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "token") {
			t.Errorf("admin on %s: error does not explain (loopback, token): %v", listen, err)
		}
	}
}

// TestAdminToken: with a token, requests without it (or with a wrong one)
// get 401 on every path; with it they are served.
func TestAdminToken(t *testing.T) {
	const token = "adm1n-t0ken"
	dsn := pg.NewDatabase(t)
	yaml := strings.Replace(ingest("", storeDefaults), "stages:", "admin: {listen: 127.0.0.1:0, token: "+token+"}\nstages:", 1)
	r := startPipeline(t, registry(t), yaml, map[string]string{"DSN": dsn}, nil, "accept")
	admin := r.p.AdminAddr()
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+admin+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/stats", "/metrics", "/healthz", "/readyz"} {
		for _, auth := range []string{"", "Bearer wrong", token, "Bearer " + token + "x"} {
			if code, _ := get(path, auth); code != http.StatusUnauthorized {
				t.Errorf("GET %s with Authorization %q: %d, want 401", path, auth, code)
			}
		}
		code, body := get(path, "Bearer "+token)
		if code != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s", path, code, body)
		}
		if strings.Contains(body, token) {
			t.Errorf("GET %s shows the token", path)
		}
	}
	t.Logf("admin %s: 401 without the token on /stats /metrics /healthz /readyz, 200 with it", admin)
}

// TestPasswordNeverShown runs a pipeline whose DSN has a password (the
// server trusts any), through PostgreSQL down at start (retries logged),
// up, records stored, /stats and /metrics read, a refused row, and a
// failed start: the password appears in no log line at debug level, in
// neither endpoint, and in no error.
func TestPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const pw = "Pa55-w0rd-never-shown"
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	dsn := withPassword(t, srv.DSN(), pw)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zap.DebugLevel))
	reg := registry(t)
	yaml := strings.Replace(ingest("", storeDefaults+"    retry: {backoff: 50ms, max_backoff: 200ms}\n"),
		"stages:", "admin: {listen: 127.0.0.1:0}\nlog: {level: debug}\nstages:", 1)
	// Load through Parse with ${DSN}, as a deployment would.
	cfg := parse(t, reg, yaml, map[string]string{"DSN": dsn})
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- p.Start(ctx) }()
	poll.Until(t, "a logged start retry", func() bool { return strings.Contains(logs.String(), "retrying") })
	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	cl := sendAndWait(t, sourceAddr(t, p, "accept"), [][]byte{jsonRecord(1), []byte(`{"id":"x"}`), jsonRecord(3)})
	t.Logf("acked %d, nacks %v", cl.Acked(), cl.Nacks())
	var seen []string
	for _, path := range []string{"/stats", "/metrics"} {
		resp, err := http.Get("http://" + p.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), pw) {
			t.Errorf("%s shows the password", path)
		}
		seen = append(seen, path)
	}
	// PostgreSQL goes away under the running pipeline; errors get logged.
	if err := srv.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := wire.Dial(ctx, sourceAddr(t, p, "accept"), wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Send(jsonRecord(10))
	c2.Flush()
	time.Sleep(500 * time.Millisecond) // let some batch retries be logged; not asserted
	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.WaitTimeout(wait); err != nil || c2.Acked() != 1 {
		t.Errorf("record sent while PostgreSQL was down: acked %d, %v", c2.Acked(), err)
	}
	if _, err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Stop's error shows the password")
		}
	}

	// A start that fails: the error must not show it either.
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	cfg2 := parse(t, reg, ingest("", storeDefaults+"    on_start: fail\n"), map[string]string{"DSN": dsn})
	p2, err := pipeline.New(cfg2, pipeline.Options{Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	err = p2.Start(ctx)
	if err == nil {
		p2.Stop(ctx)
		t.Fatal("Start succeeded with PostgreSQL down")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("Start's error shows the password: %v", err)
	}
	out := logs.String()
	lines := strings.Count(out, "\n")
	t.Logf("%d log lines at debug level, %d mention the DSN's host; endpoints read: %v; failed-start error: %v",
		lines, strings.Count(out, "127.0.0.1:"), seen, err)
	if strings.Contains(out, pw) {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, pw) {
				t.Errorf("log line shows the password: %s", l)
			}
		}
	}
	if lines == 0 {
		t.Error("nothing was logged: the check proves nothing")
	}
}
