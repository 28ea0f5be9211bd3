package b4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stagedserver/seda/bench/b3"
	"github.com/stagedserver/seda/bench/loadgen"
	"github.com/stagedserver/seda/internal/pgtemp"
)

// Target of docs/BENCHMARKS.md: acked rows/s under overload over the sustained
// maximum.
const Target = 0.9

// Config sizes the benchmark; the zero value is the full B4.
type Config struct {
	Duration time.Duration // overload duration; 0: 30s
	Factor   float64       // offered rate over the sustained maximum; 0: 10
	Conns    int           // client connections; 0: 64
	// SustainRecords is the size of the run that measures the sustained
	// maximum; 0: 300,000.
	SustainRecords int
	// Window is the unacked records per connection in the overload run;
	// 0: 20,000, so that the client offers the rate rather than waiting.
	Window int
	DSN    string    // existing server instead of a throwaway one
	Log    io.Writer // progress; nil: none
}

func (c *Config) fill() {
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Factor <= 0 {
		c.Factor = 10
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.SustainRecords <= 0 {
		c.SustainRecords = 300_000
	}
	if c.Window <= 0 {
		c.Window = 20_000
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// MemSample is one second's memory figures.
type MemSample struct {
	At       time.Duration
	RSS      int64 // VmRSS
	HeapLive uint64
	Depth    int // the store queue's depth
}

// Result is what Run measured.
type Result struct {
	Config     Config
	Sustained  float64 // rows/s of the windowed run
	Offered    float64 // the rate asked of the client
	SentRate   float64 // records/s the client managed to write
	Sent       uint64
	Acked      uint64
	Nacked     uint64
	Nacks      map[string]uint64
	AckedRate  float64  // acked during Duration / Duration
	PerSecond  []uint64 // acked in each second
	PeakRSS    int64    // VmHWM over the overload run
	Mem        []MemSample
	TableRows  int64 // rows stored, at least Acked
	QueueCap   int   // the store queue's capacity
	SettleTime time.Duration
}

// Ratio is AckedRate over Sustained.
func (r *Result) Ratio() float64 {
	if r.Sustained == 0 {
		return 0
	}
	return r.AckedRate / r.Sustained
}

// Run runs B4. Every acked id is checked against the table; a missing one
// is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, QueueCap: 16384}
	dsn := cfg.DSN
	if dsn == "" {
		fmt.Fprintln(cfg.Log, "b4: starting a throwaway PostgreSQL (durable defaults)...")
		srv, err := pgtemp.Start(ctx, pgtemp.Options{Settings: map[string]string{"max_connections": "200"}})
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn = srv.DSN()
	}

	// The sustained maximum: windowed clients against B3's pipeline
	// (overflow block): 64 windows of 1,000 exceed the store queue, so
	// under reject some would be refused even at the sustainable rate.
	sustained, err := run(ctx, dsn, "b4_sustain", "block", loadgen.Config{Conns: cfg.Conns, Records: cfg.SustainRecords,
		Window: 1000, CollectIDs: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("b4: sustained run: %w", err)
	}
	res.Sustained = sustained.lr.AckedPerSec()
	fmt.Fprintf(cfg.Log, "b4: sustained %.0f rows/s (%d acked, %d nacked)\n", res.Sustained, sustained.lr.Acked, sustained.lr.Nacked)

	res.Offered = cfg.Factor * res.Sustained
	fmt.Fprintf(cfg.Log, "b4: offering %.0f records/s for %v...\n", res.Offered, cfg.Duration)
	over, err := run(ctx, dsn, "b4_overload", "reject", loadgen.Config{Conns: cfg.Conns, Duration: cfg.Duration,
		Rate: res.Offered, Window: cfg.Window, CollectIDs: true, AckTimeout: 2 * time.Minute}, &res.Mem)
	if err != nil {
		return nil, fmt.Errorf("b4: overload run: %w", err)
	}
	lr := over.lr
	res.Sent, res.Acked, res.Nacked, res.Nacks = lr.Sent, lr.Acked, lr.Nacked, lr.Nacks
	res.SentRate = float64(lr.Sent) / cfg.Duration.Seconds()
	secs := int(cfg.Duration / time.Second)
	res.PerSecond = lr.Timeline
	var during uint64
	for i := 0; i < secs && i < len(lr.Timeline); i++ {
		during += lr.Timeline[i]
	}
	res.AckedRate = float64(during) / float64(min(secs, len(lr.Timeline)))
	res.PeakRSS, res.TableRows, res.SettleTime = over.peak, over.rows, over.settle
	return res, nil
}

type runResult struct {
	lr     *loadgen.Result
	peak   int64
	rows   int64
	settle time.Duration // from the end of sending until the client was done
}

// run starts the pipeline on a fresh table, offers lc, stops it, and
// checks that every acked id is stored. With mem it samples memory every
// second.
func run(ctx context.Context, dsn, table, overflow string, lc loadgen.Config, mem *[]MemSample) (runResult, error) {
	if err := b3.CreateTable(ctx, dsn, table); err != nil {
		return runResult{}, err
	}
	defer b3.DropTable(context.WithoutCancel(ctx), dsn, table)
	debug.FreeOSMemory()
	b3.ResetPeakRSS()
	srv, p, err := b3.StartPipeline(ctx, dsn, table, overflow)
	if err != nil {
		return runResult{}, err
	}
	stopSampling := func() {}
	if mem != nil {
		done := make(chan struct{})
		var wg sync.WaitGroup
		start := time.Now()
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var ms runtime.MemStats
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				runtime.ReadMemStats(&ms)
				s := MemSample{At: time.Since(start).Round(time.Second), RSS: b3.RSS(), HeapLive: ms.HeapAlloc}
				if st := p.Stage("store"); st != nil && st.Port() != nil {
					s.Depth = st.Port().Stats().Depth
				}
				*mem = append(*mem, s)
			}
		})
		stopSampling = func() { close(done); wg.Wait() }
	}
	lc.Addr = srv.Addr()
	sendStart := time.Now()
	lr, err := loadgen.Run(ctx, lc)
	settle := time.Duration(0)
	if lc.Duration > 0 {
		settle = time.Since(sendStart) - lc.Duration
	}
	stopSampling()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := errors.Join(err, srv.Stop(sctx)); err != nil {
		return runResult{}, err
	}
	rr := runResult{lr: lr, peak: b3.PeakRSS(), settle: settle}
	if err := lr.Err(); err != nil {
		return rr, err
	}
	if lr.Acked+lr.Nacked != lr.Sent {
		return rr, fmt.Errorf("%d sent, %d acked, %d nacked: some unanswered", lr.Sent, lr.Acked, lr.Nacked)
	}
	if rr.rows, err = b3.CheckStored(ctx, dsn, table, lr.AckedIDs); err != nil {
		return rr, err
	}
	return rr, nil
}

// Markdown renders the results as the body of B4's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "The example pipeline on a throwaway PostgreSQL with durable defaults, %d connections. Sustained maximum: B3's pipeline (overflow: block), %d records, window 1,000 per connection. Overload: the store queue under `overflow: reject` (capacity %d), %.0f× the sustained rate offered for %v, window %d per connection.\n\n",
		c.Conns, c.SustainRecords, r.QueueCap, c.Factor, c.Duration, c.Window)
	b.WriteString("RSS and heap are of the whole benchmark process: the load client runs in it and keeps, by design, the id of every acked record (for the check against the table) and, in internal/wire's Client, every nack it received; both grow with the run's length, so a growing RSS here is not the pipeline's. The store queue depth (bounded by its capacity) is the pipeline's own backlog.\n\n")
	b.WriteString("| figure | value |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| sustained maximum | %.0f rows/s |\n", r.Sustained)
	fmt.Fprintf(&b, "| offered | %.0f records/s (the client wrote %.0f/s: TCP backpressure holds it back) |\n", r.Offered, r.SentRate)
	fmt.Fprintf(&b, "| acked under overload | %.0f rows/s |\n", r.AckedRate)
	fmt.Fprintf(&b, "| acked / sustained | %.2f (target ≥ %.2f: %s) |\n", r.Ratio(), Target, yesNo(r.Ratio() >= Target))
	if len(r.PerSecond) > 2 {
		n := min(len(r.PerSecond), int(c.Duration/time.Second))
		body := slices.Clone(r.PerSecond[1:n])
		if len(body) > 0 {
			fmt.Fprintf(&b, "| acked per second, min / max (seconds 2–%d) | %d / %d |\n", n, slices.Min(body), slices.Max(body))
		}
	}
	fmt.Fprintf(&b, "| records sent / acked / nacked | %d / %d / %d |\n", r.Sent, r.Acked, r.Nacked)
	fmt.Fprintf(&b, "| nacks by reason | %s |\n", reasons(r.Nacks))
	fmt.Fprintf(&b, "| every acked row in the table | yes (%d acked, %d rows) |\n", r.Acked, r.TableRows)
	fmt.Fprintf(&b, "| peak RSS (VmHWM) | %.0f MiB |\n", float64(r.PeakRSS)/(1<<20))
	if len(r.Mem) >= 4 {
		h := len(r.Mem) / 2
		fmt.Fprintf(&b, "| max RSS first half / second half | %.0f / %.0f MiB |\n", float64(maxRSS(r.Mem[:h]))/(1<<20), float64(maxRSS(r.Mem[h:]))/(1<<20))
	}
	fmt.Fprintf(&b, "| drain after sending stopped | %v |\n", r.SettleTime.Round(time.Millisecond))
	if len(r.Mem) > 0 {
		b.WriteString("\nRSS, Go heap and store queue depth, sampled every second:\n\n| s | RSS MiB | heap MiB | store depth |\n| ---: | ---: | ---: | ---: |\n")
		for _, m := range r.Mem {
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %d |\n", int(m.At.Seconds()), float64(m.RSS)/(1<<20), float64(m.HeapLive)/(1<<20), m.Depth)
		}
	}
	return b.String()
}

func maxRSS(ms []MemSample) int64 {
	var m int64
	for _, s := range ms {
		m = max(m, s.RSS)
	}
	return m
}

func reasons(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
