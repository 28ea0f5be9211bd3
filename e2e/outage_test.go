package e2e

// This file holds the outage test: PostgreSQL stopped under a steady
// load, and what operators are told while it is down and after.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stats"
)

// steadyLoad sends records at about rate a second in all, from workers
// goroutines, each in blocks of block records on a connection of its own
// (resender: nacked and unsettled records are sent again), until stop is
// called. Every record sent is acked before stop returns.
type steadyLoad struct {
	rs   *resender
	quit chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	sent int64 // ids 1..sent have been handed out
	errs []error
}

func startSteadyLoad(addr string, workers, block int, rate float64) *steadyLoad {
	l := &steadyLoad{rs: newResender(func() string { return addr }, block, 0), quit: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	every := time.Duration(float64(time.Second) * float64(block*workers) / rate)
	for w := range workers {
		l.wg.Go(func() {
			start := time.Now().Add(time.Duration(w) * every / time.Duration(workers))
			for k := 0; ; k++ {
				select {
				case <-l.quit:
					return
				case <-time.After(time.Until(start.Add(time.Duration(k) * every))):
				}
				l.mu.Lock()
				first := l.sent + 1
				l.sent += int64(block)
				l.mu.Unlock()
				if err := l.rs.run(ctx, idRange(first, block)); err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
					return
				}
			}
		})
	}
	go func() { l.wg.Wait(); cancel() }()
	return l
}

// stop ends the load once each worker's block in progress is acked, and
// returns how many records were sent and the workers' errors.
func (l *steadyLoad) stop() (int64, []error) {
	close(l.quit)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.errs
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// poolWatch samples a stage's pool while it runs: the most workers seen,
// and whether blocked ever exceeded workers.
type poolWatch struct {
	mu         sync.Mutex
	maxWorkers int
	maxDepth   int
	overBlock  string // the first sample with more blocked than workers
	done       chan struct{}
	wg         sync.WaitGroup
}

func watchPool(sample func() stats.Stage) *poolWatch {
	w := &poolWatch{done: make(chan struct{})}
	w.wg.Go(func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			st := sample()
			w.mu.Lock()
			if c := st.Control; c != nil && c.Workers != nil {
				w.maxWorkers = max(w.maxWorkers, c.Workers.Now)
			}
			w.maxDepth = max(w.maxDepth, st.Queue.Depth)
			if st.Pool.Blocked > st.Pool.Workers && w.overBlock == "" {
				w.overBlock = fmt.Sprintf("%s: blocked %d of %d workers", time.Now().Format(time.TimeOnly), st.Pool.Blocked, st.Pool.Workers)
			}
			w.mu.Unlock()
			select {
			case <-w.done:
				return
			case <-tk.C:
			}
		}
	})
	return w
}

// stop ends the watch and returns the most workers and the deepest queue
// seen, and the first sample with more blocked than workers ("": none).
func (w *poolWatch) stop() (workers, depth int, overBlock string) {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxWorkers, w.maxDepth, w.overBlock
}

// TestPostgresOutage stops PostgreSQL under a steady load on the ingest
// pipeline with its store's pool sized by its controller (issue 21's
// contract 1 and 2) and the dashboard open in headless Chromium:
//   - within 15 s, /readyz answers 503 naming the store, the store's
//     health is down with the error, /metrics says so, and the dashboard
//     shows the banner with it;
//   - while it is down, the age of the store's oldest event grows (a stall
//     shows as it happens), its pool grows by one worker at most, and its
//     blocked workers never outnumber its workers;
//   - within 20 s of PostgreSQL's restart, /readyz is 200 again, the
//     health ok, the banner gone; every record sent is acked and stored.
//
// DASHBOARD_OUTAGE_SCREENSHOT=docs/dashboard-outage.png writes a picture
// of the page during the outage there (README's).
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	shot := os.Getenv("DASHBOARD_OUTAGE_SCREENSHOT")
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	dsn := srv.DSN()
	// The store as in pipeline.yaml: no tuning keys, its batch and pool
	// sized by its controllers, the default retry.
	r := startPipeline(t, registry(t), "admin: {listen: 127.0.0.1:0}\n"+ingest("", ""),
		map[string]string{"DSN": dsn}, nil, "accept")
	admin := "http://" + r.p.AdminAddr()
	store := func() stats.Stage { return stageStats(t, r.p, "store") }

	bctx := browser(t)
	bctx, bcancel := context.WithTimeout(bctx, 3*time.Minute)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS(`svg#graph`))); err != nil {
		t.Fatal(err)
	}
	banner := func() (bool, string) {
		type b struct {
			Hidden bool   `json:"hidden"`
			Text   string `json:"text"`
		}
		v, err := chromedp.Run(bctx, chromedp.Evaluate[b](`(() => { const e = document.getElementById('health-banner'); return {hidden: e.hidden || getComputedStyle(e).display === 'none', text: e.textContent}; })()`))
		if err != nil {
			t.Fatal(err)
		}
		return !v.Hidden, v.Text
	}
	healthCell := func() string {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('[data-stage="store"] [data-field="health"]').textContent`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	const rate = 3000
	load := startSteadyLoad(r.addr, 16, 1000, rate)
	poll.Until(t, "a steady load stored, the store ok", func() bool {
		return len(load.rs.ackedIDs()) >= rate && store().Health.State == stats.HealthOK
	})
	poll.Until(t, "the dashboard showing the store ok, no banner", func() bool {
		shown, _ := banner()
		return healthCell() == stats.HealthOK && !shown
	})
	st := store()
	if st.Control == nil || st.Control.Workers == nil || !st.Control.Workers.Auto {
		t.Fatalf("the store's pool is not sized by its controller: %+v", st.Control)
	}
	before := st.Control.Workers.Now
	// The watch samples from its own goroutine: no t there.
	watch := watchPool(func() stats.Stage { st, _ := r.p.StageStats("store"); return st })
	ackedBefore := len(load.rs.ackedIDs())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Within 15 s: /readyz 503 naming the store, the store down with the
	// error.
	var code int
	var why string
	within(t, 15*time.Second, "/readyz 503 and the store down", func() bool {
		code, why = readyz(t, admin)
		st = store()
		return code == http.StatusServiceUnavailable && st.Health.State == stats.HealthDown
	})
	noticed := time.Since(stopped)
	if !strings.Contains(why, "stage store down") || st.Health.Error == "" || !strings.Contains(why, st.Health.Error) {
		t.Errorf("/readyz says %q, the store's health %+v; want the store named with its error", why, st.Health)
	}
	if m := metrics(t, admin); !strings.Contains(m, `stage="store",state="down"} 1`) {
		t.Errorf("/metrics does not say the store is down:\n%s", grepLines(m, "pipeline_stage_health"))
	}
	within(t, 15*time.Second, "the dashboard's banner", func() bool {
		shown, text := banner()
		return shown && strings.Contains(text, "store is down") && strings.Contains(text, "PostgreSQL") && healthCell() == stats.HealthDown
	})
	_, bannerText := banner()

	// The outage goes on: the stall shows in the oldest event's age while
	// nothing finishes, and the pool controller has time to be tempted.
	failures := st.Health.Failures
	poll.Until(t, "the store's oldest event 10 s old, more failed tries", func() bool {
		st = store()
		return st.Latency.OldestMs >= 10000 && st.Health.Failures >= failures+2 && st.Health.State == stats.HealthDown
	})
	if shot != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", shot)
	}
	ackedDuring := len(load.rs.ackedIDs())

	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	outage := restarted.Sub(stopped)
	within(t, 20*time.Second, "/readyz 200 and the store ok", func() bool {
		code, why = readyz(t, admin)
		return code == http.StatusOK && store().Health.State == stats.HealthOK
	})
	recovered := time.Since(restarted)
	maxWorkers, maxDepth, overBlock := watch.stop()
	within(t, 15*time.Second, "the dashboard's banner gone, the store ok", func() bool {
		shown, _ := banner()
		return !shown && healthCell() == stats.HealthOK
	})

	sent, errs := load.stop()
	for _, err := range errs {
		t.Error(err)
	}
	acked := load.rs.ackedIDs()
	stored := storedIDs(t, dsn, "events")
	rows, distinct := counts(t, dsn, "events")
	t.Logf("load %d/s (16 connections at a time, 1000 records each); %d acked before the outage, %d by its end; PostgreSQL stopped for %s: "+
		"noticed (/readyz 503, store down) after %s, ok again %s after the restart; store workers %d before, %d at most, its queue %d deep at most; %s; "+
		"sent %d, count(*)=%d distinct=%d; banner: %q",
		rate, ackedBefore, ackedDuring, outage.Round(100*time.Millisecond), noticed.Round(100*time.Millisecond),
		recovered.Round(100*time.Millisecond), before, maxWorkers, maxDepth, load.rs.summary(), sent, rows, distinct, bannerText)
	if maxWorkers > before+1 {
		t.Errorf("the store's pool grew from %d to %d workers while PostgreSQL was down; want at most one more", before, maxWorkers)
	}
	if overBlock != "" {
		t.Errorf("more workers blocked than workers: %s", overBlock)
	}
	if ids, k := missing(acked, stored); k > 0 {
		t.Fatalf("%d acked records are not stored, e.g. %v", k, ids)
	}
	if int64(len(acked)) != sent || rows != sent || distinct != sent {
		t.Errorf("sent %d, acked %d, count(*)=%d, distinct=%d; want every record acked and stored once", sent, len(acked), rows, distinct)
	}
}

// within waits for cond as poll.Until does, failing the test when it is
// not true within limit: the contract's bound, not a guess at a speed.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	poll.Until(t, what, func() bool {
		if cond() {
			return true
		}
		if time.Since(start) > limit {
			t.Fatalf("not within %s: %s", limit, what)
		}
		return false
	})
}

// metrics returns /metrics's text.
func metrics(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepLines returns the lines of s that hold sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
