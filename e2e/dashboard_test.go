package e2e

// This file tests the admin dashboard in headless Chromium: it shows
// every stage and updates live, and its charts keep a readable scale
// through a spike.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
)

// chromium returns the headless browser the dashboard test drives. It is
// a failure, not a skip, when there is none: make test installs Debian's
// chromium (scripts/ensure-chromium.sh).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run `bash scripts/ensure-chromium.sh` (make test does) or `apt-get install -y chromium`")
	return ""
}

// browser starts a headless Chromium with the flags that work on a
// machine without a network beyond loopback, and returns a tab's context;
// everything is stopped when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium makes a directory for its singleton socket in TMPDIR
		// and leaves it when killed, as the test's end kills it.
		chromedp.Env("TMPDIR="+t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// Start the browser now, so that its start-up does not count against
	// the first action's deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// field returns the number a stage's data-field element shows on the
// page.
func field(ctx context.Context, stage, name string) (float64, error) {
	js := fmt.Sprintf(`(document.querySelector('[data-stage=%q] [data-field=%q]') || {textContent: "missing"}).textContent`, stage, name)
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, fmt.Errorf("stage %s field %s: %q is not a number", stage, name, text)
	}
	return v, nil
}

// TestDashboardInBrowser opens the admin endpoint's dashboard in headless
// Chromium against a running pipeline (netio -> json -> PostgreSQL): every
// stage is shown, with a graph drawn as SVG and the store's figures; then
// records are sent while the page stays open, and the store's out must
// grow on the page without a reload, and the charts must draw.
// DASHBOARD_SCREENSHOT=docs/dashboard.png also sends a paced load for half
// a minute and writes a screenshot of the page there (README's picture).
func TestDashboardInBrowser(t *testing.T) {
	shot := os.Getenv("DASHBOARD_SCREENSHOT")
	dsn := pg.NewDatabase(t)
	// The store has no tuning keys, as in pipeline.yaml: the page shows
	// its controllers' batch and workers (auto).
	r := startPipeline(t, registry(t), "admin: {listen: 127.0.0.1:0}\n"+ingest("", ""),
		map[string]string{"DSN": dsn}, nil, "accept")
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	url := "http://" + r.p.AdminAddr() + "/"
	err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`svg#graph`)),
		// A mark that a reload would wipe out.
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
	)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	stages, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-stage]')].map(e => e.dataset.stage)`))
	if err != nil {
		t.Fatal(err)
	}
	svgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg').length`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"accept", "parse", "store"}; !slices.Equal(stages, want) || svgs == 0 {
		t.Fatalf("the page shows stages %v and %d svg elements; want %v and a graph", stages, svgs, want)
	}
	for _, f := range []string{"depth", "capacity", "in", "out", "p99"} {
		_, err := field(ctx, "store", f)
		if f == "p99" && err != nil && strings.Contains(err.Error(), `"–" is not a number`) {
			continue // nothing finished yet: no latency
		}
		if err != nil {
			t.Errorf("the store's %s: %v", f, err)
		}
	}
	if c, err := field(ctx, "store", "capacity"); err != nil || c != stage.DefaultSinkCapacity {
		t.Errorf("the store's capacity on the page: %v, %v; want %d", c, err, stage.DefaultSinkCapacity)
	}
	before, err := field(ctx, "store", "out")
	if err != nil {
		t.Fatal(err)
	}

	const conns, perConn = 4, 5000
	if err := send(r.addr, conns, perConn, 0, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := field(ctx, "store", "out")
		if err != nil {
			t.Fatal(err)
		}
		if out >= before+conns*perConn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store's out on the page went from %v to %v after %d records were acked; want it to grow by them", before, out, conns*perConn)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-out polyline, #chart-depth polyline').length`))
	if err != nil {
		t.Fatal(err)
	}
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`))
	if err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Error("the page was reloaded")
	}
	if lines == 0 {
		t.Error("the charts draw no line after a load")
	}
	if in, err := field(ctx, "accept", "in"); err != nil || in < conns*perConn {
		t.Errorf("the source's in on the page: %v, %v; want at least %d", in, err, conns*perConn)
	}

	// Totals are set in groups of three digits (the text stays the
	// number, which field read above).
	grouped, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const el = document.querySelector('[data-stage="store"] [data-field="out"]');
		const gs = [...el.querySelectorAll('.g')];
		const apart = gs.length > 0 && gs.every(g => parseFloat(getComputedStyle(g).marginLeft) > 0);
		return el.firstChild.textContent + gs.map(g => ' ' + g.textContent).join('') + (apart ? '' : ' (not set apart)');
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if want := groupDigits(int64(before) + conns*perConn); grouped != want {
		t.Errorf("the store's out is shown as %q, want %q", grouped, want)
	}
	// No series hides another: accept's, parse's and store's rates are
	// the same figures, so each line is drawn narrower than the one below.
	// A rate needs two samples of the page's history: on a quiet machine
	// the load can end before the second, so the lines may come a poll
	// later than the totals.
	var widths []float64
	deadline = time.Now().Add(30 * time.Second)
	for {
		widths, err = chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[...document.querySelectorAll('#chart-out polyline')].map(p => parseFloat(getComputedStyle(p).strokeWidth))`))
		if err != nil {
			t.Fatal(err)
		}
		if len(widths) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(widths) != 3 || !(widths[0] > widths[1] && widths[1] > widths[2]) {
		t.Errorf("the out chart's lines, in the order drawn, are %v wide; want three, each narrower than the one before", widths)
	}

	if shot != "" {
		screenshot(t, ctx, r.addr, shot)
	}
}

// send sends perConn records on each of conns connections at once, with
// ids from idBase+1, paced to rate records a second in all when rate > 0,
// and waits until every one is acked.
func send(addr string, conns, perConn int, idBase int64, rate float64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Go(func() {
			cl, err := wire.Dial(ctx, addr, wire.Lines)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			start := time.Now()
			for i := range perConn {
				if rate > 0 {
					if d := time.Until(start.Add(time.Duration(float64(i) * float64(conns) / rate * float64(time.Second)))); d > 0 {
						time.Sleep(d)
					}
				}
				if _, err := cl.Send(jsonRecord(idBase + int64(c*perConn+i+1))); err != nil {
					errs <- err
					return
				}
				if rate > 0 {
					if err := cl.Flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := cl.Flush(); err != nil {
				errs <- err
				return
			}
			if err := cl.Wait(ctx); err != nil {
				errs <- err
				return
			}
			if got := cl.Acked(); got != uint64(perConn) {
				errs <- fmt.Errorf("conn %d: %d of %d acked (nacks %v)", c, got, perConn, cl.Nacks())
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// screenshot sends a paced load for a minute, so that the charts have
// something to show, and writes a PNG of the whole page to path while the
// load runs.
func screenshot(t *testing.T, ctx context.Context, addr, path string) {
	done := make(chan error, 1)
	go func() { done <- send(addr, 8, 10000, 1e6, 1500) }()
	if err := chromedp.Do(ctx, chromedp.Sleep(50*time.Second)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// groupDigits writes n as the dashboard shows a total: "20 000".
func groupDigits(n int64) string {
	d := strconv.FormatInt(n, 10)
	head := len(d) % 3
	if head == 0 {
		head = 3
	}
	out := d[:head]
	for i := head; i < len(d); i += 3 {
		out += " " + d[i:i+3]
	}
	return out
}

// TestDashboardChartScale gives the dashboard, instead of /history, five
// minutes of a steady 1000 records a second with one catch-up second of
// 101 000 in the middle (as after a stall), and a queue 4000 deep then:
// the out chart keeps a scale that shows the steady rate, draws the spike
// cut at its top and says how high it went; the depth chart shows the
// peak whole.
func TestDashboardChartScale(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), "admin: {listen: 127.0.0.1:0}\n"+ingest("", ""),
		map[string]string{"DSN": dsn}, nil, "accept")
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	body, err := json.Marshal(map[string]any{"history": spikeHistory(time.Now(), 300, 150), "interval_ms": 1000})
	if err != nil {
		t.Fatal(err)
	}
	paused := make(chan fetch.RequestID, 8)
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case paused <- e.RequestID:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-paused:
				_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: id, ResponseCode: 200,
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}}, Body: body})
			}
		}
	})
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/history"}}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+r.p.AdminAddr()+"/")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the out chart to draw the history's lines", func() bool {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-out polyline').length`))
		return err == nil && n == 3
	})

	const ticks = `(id) => Math.max(...[...document.querySelectorAll('#' + id + ' text.tick')].map(
		t => parseFloat(t.textContent) * ({k: 1e3, M: 1e6, G: 1e9}[t.textContent.slice(-1)] || 1)))`
	top, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(`+ticks+`)('chart-out')`))
	if err != nil {
		t.Fatal(err)
	}
	cut, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#chart-out text.cut') || {textContent: ''}).textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if top < 1000 || top > 5000 || !strings.Contains(cut, "101k") {
		t.Errorf("out chart: top of the scale %v, mark %q; want the steady 1000/s in view (a top of 5k at most) and the spike said as 101k", top, cut)
	}
	// A queue's peak is news, not an artefact: the depth chart's scale
	// takes it in.
	depthTop, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(`+ticks+`)('chart-depth')`))
	if err != nil || depthTop < 4000 {
		t.Errorf("the depth chart's scale tops at %v (%v); want the peak depth of 4000 in view", depthTop, err)
	}
}

// spikeHistory is /history's answer for pipeline ingest's three stages:
// n one-second samples up to now, each stage finishing 1000 records a
// second, except at sample spike, where 100 000 more finish at once and
// the store's queue is 4000 deep.
func spikeHistory(now time.Time, n, spike int) []map[string]any {
	var out []map[string]any
	var total uint64
	for i := range n {
		total += 1000
		if i == spike {
			total += 100000
		}
		depth := []int{3, 0, 40}
		if i == spike {
			depth[2] = 4000
		}
		out = append(out, map[string]any{
			"t":     now.Add(time.Duration(i-n) * time.Second).UnixMilli(),
			"depth": depth,
			"in":    []uint64{total, total, total},
			"out":   []uint64{total, total, total},
			"p99":   []float64{4, 0.05, 3.9},
		})
	}
	return out
}
