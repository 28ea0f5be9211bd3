package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/port"
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
		if _, err := field(ctx, "store", f); err != nil {
			t.Errorf("the store's %s: %v", f, err)
		}
	}
	if c, err := field(ctx, "store", "capacity"); err != nil || c != port.DefaultCapacity {
		t.Errorf("the store's capacity on the page: %v, %v; want %d", c, err, port.DefaultCapacity)
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
