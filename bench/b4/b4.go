package b4

// This file runs B4: the overloaded pipeline as pipectl run, sampled for
// memory and CPU, every acked id checked; and its growth and section.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Target of docs/BENCHMARKS.md: acked rows/s under overload over the sustained
// maximum.
const Target = 0.9

// Config sizes the benchmark; the zero value is the full B4.
type Config struct {
	Duration time.Duration // overload duration; 0: 30s
	Factor   float64       // offered rate over the sustained maximum; 0: 10
	Conns    int           // client connections; 0: 64
	// SustainDuration and SustainRecords bound the run that measures the
	// sustained maximum, right before the overload run: it ends at
	// whichever comes first. 0: 10s and 10,000,000. A run of seconds, not
	// a burst, so that it meets the same WAL writes and checkpoints as
	// the overload.
	SustainDuration time.Duration
	SustainRecords  int
	// Window is the unacked records per connection in the overload run;
	// 0: 20,000, so that the client offers the rate rather than waiting.
	Window int
	// Pipectl is the pipectl binary that runs the pipeline under test;
	// "": build cmd/pipectl into a temporary directory.
	Pipectl string
	// NoPerf skips the CPU profile of the pipeline process under the
	// overload, taken with perf(1), when it is installed, in a further
	// overload run of up to 10 s after the measured one.
	NoPerf bool
	// Admission, when positive, puts the overload run's source under
	// admission control with this p99 target (`admission: {target: D}`).
	Admission time.Duration
	DSN       string    // existing server instead of a throwaway one
	Log       io.Writer // progress; nil: none
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
	if c.SustainDuration <= 0 {
		c.SustainDuration = 10 * time.Second
	}
	if c.SustainRecords <= 0 {
		c.SustainRecords = 10_000_000
	}
	c.Conns = min(c.Conns, c.SustainRecords)
	if c.Window <= 0 {
		c.Window = 20_000
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// MemSample is one second's memory figures of the pipeline's process.
type MemSample struct {
	At       time.Duration
	RSS      int64  // VmRSS
	HeapLive uint64 // go_memstats_heap_alloc_bytes from /metrics: live and not yet collected
	// HeapGoal is go_memstats_next_gc_bytes: the heap size at which the
	// next collection starts, twice what the last one found live (GOGC
	// 100, no memory limit). HeapHeld is the heap memory the runtime
	// holds from the OS (heap_sys less heap_released): RSS's Go part.
	HeapGoal, HeapHeld uint64
	Depth              int // the store queue's depth, from /stats
}

// CPU is the CPU time spent over a run's load phase.
type CPU struct {
	Pipeline time.Duration // the pipectl process
	Postgres time.Duration // the postmaster and its children; 0 with Config.DSN
	Client   time.Duration // this process: the load client
	// Machine is the busy time of all cores (/proc/stat), so that
	// Machine-Pipeline-Postgres-Client is what other processes took;
	// IOWait is the cores' time idle waiting for I/O.
	Machine, IOWait time.Duration
	Wall            time.Duration
}

// Others is the CPU time processes other than the pipeline, PostgreSQL
// and the client took: a busy machine.
func (c CPU) Others() time.Duration {
	return max(c.Machine-c.Pipeline-c.Postgres-c.Client, 0)
}

// Result is what Run measured.
type Result struct {
	Config     Config
	Sustained  float64 // rows/s of the windowed run
	SustainCPU CPU
	Offered    float64 // the rate asked of the client
	SentRate   float64 // records/s the client managed to write
	Sent       uint64
	Acked      uint64
	Nacked     uint64
	Nacks      map[string]uint64
	AckedRate  float64  // acked during Duration / Duration
	PerSecond  []uint64 // acked in each second
	PeakRSS    int64    // the pipeline process's VmHWM, over its life
	Mem        []MemSample
	CPU        CPU // over the overload run
	// Hot lists the pipeline process's hottest functions over the
	// overload run by self time, as perf report prints them (empty
	// without perf).
	Hot []string
	// HotInclusive lists the pipeline's own functions by inclusive time
	// (the function and what it calls), from the same profile.
	HotInclusive []string
	TableRows    int64 // rows stored, at least Acked
	QueueCap     int   // the store queue's capacity
	SettleTime   time.Duration
}

// Ratio is AckedRate over Sustained.
func (r *Result) Ratio() float64 {
	if r.Sustained == 0 {
		return 0
	}
	return r.AckedRate / r.Sustained
}

// Growth compares the pipeline's RSS over the overload run's sending
// phase, its middle third against its last third: the largest samples and
// the medians. Grows is true when the last third's exceed the middle
// third's by more than 5% (and 4 MiB), both of them, so that one sample
// caught at a garbage collector's peak does not decide: memory that grows
// with time rather than with the queues. Slope is the least-squares trend
// of RSS over the last two thirds (after the warm-up), in bytes per minute.
func (r *Result) Growth() (g Growth, ok bool) {
	var ms []MemSample
	for _, m := range r.Mem {
		if m.At <= r.Config.Duration {
			ms = append(ms, m)
		}
	}
	if len(ms) < 3 {
		return Growth{}, false
	}
	k := len(ms) / 3
	mid, last := ms[k:len(ms)-k], ms[len(ms)-k:]
	g = Growth{MidMax: maxRSS(mid), LastMax: maxRSS(last), MidMedian: medianRSS(mid), LastMedian: medianRSS(last)}
	above := func(a, b int64) bool { return a > b+max(b/20, 4<<20) }
	g.Grows = above(g.LastMax, g.MidMax) && above(g.LastMedian, g.MidMedian)
	// The live heap: what the last collection found, half the next
	// goal (GOGC 100, no memory limit). Under overload it swings from
	// second to second with what is in flight (B4a: 28 to 80 MiB, a run's
	// thirds differing in how many high seconds they drew), and the
	// queues and windows bound that; a leak raises its floor, what the
	// collections find at the quietest moments. So the test is on the
	// least of each third.
	midLive, lastLive := liveHeaps(mid), liveHeaps(last)
	// A sample whose /metrics read failed (a loaded machine) has no
	// goal: with none in a third, the live heap is not measured.
	g.LiveKnown = len(midLive) > 0 && len(lastLive) > 0
	if g.LiveKnown {
		g.MidLive, g.LastLive = midLive[0], lastLive[0]
		g.MidLiveMax, g.LastLiveMax = slices.Max(midLive), slices.Max(lastLive)
		g.LiveGrows = above(g.LastLive, g.MidLive)
	}
	var sx, sy, sxx, sxy float64
	for _, m := range ms[k:] {
		x, y := m.At.Minutes(), float64(m.RSS)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(ms) - k)
	if d := n*sxx - sx*sx; d > 0 {
		g.Slope = (n*sxy - sx*sy) / d
	}
	return g, true
}

// Growth is what Result.Growth found.
type Growth struct {
	MidMax, LastMax       int64
	MidMedian, LastMedian int64
	Slope                 float64 // bytes per minute
	Grows                 bool
	// MidLive and LastLive are the least live heap (HeapGoal/2) in the
	// middle and the last third, its floor, and MidLiveMax and
	// LastLiveMax the largest; LiveGrows is Grows's test on the floors: a
	// leak, where RSS rising with a flat live heap is the runtime keeping
	// the largest heap it has had (see bench/RESULTS.md, B4).
	MidLive, LastLive       int64
	MidLiveMax, LastLiveMax int64
	LiveKnown, LiveGrows    bool
}

// Run runs B4: the pipeline under test runs as `pipectl run` in its own
// process, so that the memory measured is the pipeline's alone. Every
// acked id is checked against the table; a missing one is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, QueueCap: 16384}
	dir, err := os.MkdirTemp("", "b4-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := rig.Pipectl(ctx, "b4", cfg.Pipectl, dir, "", cfg.Log)
	if err != nil {
		return nil, err
	}
	h := &harness{bin: bin, dir: dir, dsn: cfg.DSN, perf: !cfg.NoPerf && perfInstalled(), log: cfg.Log, admission: cfg.Admission}
	if h.dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b4", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		h.dsn, h.pgPID = srv.DSN(), pid
	}

	// The sustained maximum, right before the overload run against the
	// same setup: windowed clients, store queue under overflow: block
	// (64 windows of 1,000 exceed the store queue, so under reject some
	// would be refused even at the sustainable rate).
	sustained, err := h.run(ctx, "b4_sustain", "block", loadgen.Config{Conns: cfg.Conns, Records: cfg.SustainRecords,
		Duration: cfg.SustainDuration, Window: 1000}, false, false)
	if err != nil {
		return nil, fmt.Errorf("b4: sustained run: %w", err)
	}
	res.Sustained, res.SustainCPU = sustained.lr.AckedPerSec(), sustained.cpu
	fmt.Fprintf(cfg.Log, "b4: sustained %.0f rows/s (%d acked, %d nacked); cpu pipeline / postgres / client / others; iowait: %s\n",
		res.Sustained, sustained.lr.Acked, sustained.lr.Nacked, res.SustainCPU.cell())

	res.Offered = cfg.Factor * res.Sustained
	fmt.Fprintf(cfg.Log, "b4: offering %.0f records/s for %v...\n", res.Offered, cfg.Duration)
	overload := loadgen.Config{Conns: cfg.Conns, Duration: cfg.Duration,
		Rate: res.Offered, Window: cfg.Window, AckTimeout: 2 * time.Minute}
	over, err := h.run(ctx, "b4_overload", "reject", overload, true, false)
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
	res.AckedRate = float64(during) / float64(max(min(secs, len(lr.Timeline)), 1))
	res.PeakRSS, res.TableRows, res.SettleTime, res.Mem, res.CPU = over.peak, over.rows, over.settle, over.mem, over.cpu
	fmt.Fprintf(cfg.Log, "b4: acked %.0f rows/s under overload (%.2f of sustained); peak RSS %.0f MiB; cpu pipeline / postgres / client / others; iowait: %s\n",
		res.AckedRate, res.Ratio(), float64(res.PeakRSS)/(1<<20), res.CPU.cell())
	if h.perf {
		// Where the pipeline's CPU goes under overload, from a shorter
		// overload run of its own (see run).
		overload.Duration = min(cfg.Duration, profileDuration)
		fmt.Fprintf(cfg.Log, "b4: profiling the pipeline over a further %v of the same overload...\n", overload.Duration)
		prof, err := h.run(ctx, "b4_profile", "reject", overload, true, true)
		if err != nil {
			return nil, fmt.Errorf("b4: profile run: %w", err)
		}
		res.Hot, res.HotInclusive = prof.hot[0], prof.hot[1]
	}
	return res, nil
}

// profileDuration bounds the profile run's overload.
const profileDuration = 10 * time.Second

type harness struct {
	bin, dir, dsn string
	pgPID         int
	perf          bool // make the profile run
	log           io.Writer
	admission     time.Duration // the overload run's admission target; 0: none
}

type runResult struct {
	lr     *loadgen.Result
	peak   int64 // the pipeline process's VmHWM
	mem    []MemSample
	cpu    CPU
	hot    [2][]string // self, inclusive
	rows   int64
	settle time.Duration // from the end of sending until the client was done
}

// run starts pipectl on a fresh table, offers lc, stops it, and checks
// that every acked id is stored. An overload run has the source's
// admission control, if configured; it samples the pipeline's memory and
// store queue every second, unless it is the profile run, which records
// the pipeline's CPU with perf(1) instead (perf's own CPU is taken from
// the machine the run measures: B4's goodput read 0.84–0.85 in the run
// perf watched, 0.89–0.97 in runs without it).
func (h *harness) run(ctx context.Context, table, overflow string, lc loadgen.Config, overload, profile bool) (runResult, error) {
	sample := overload && !profile
	if err := rig.CreateTable(ctx, h.dsn, table); err != nil {
		return runResult{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), h.dsn, table)
	// Write out what earlier runs left dirty, so that its checkpoint is
	// not charged to this run (best effort: it needs a privileged role).
	_ = execSQL(ctx, h.dsn, "CHECKPOINT")
	adm := time.Duration(0)
	if overload {
		adm = h.admission
	}
	proc, err := startPipectl(ctx, h.bin, h.dir, h.dsn, table, overflow, adm)
	if err != nil {
		return runResult{}, err
	}
	pid := proc.pid()
	var rr runResult
	stopSampling := func() {}
	if sample {
		done := make(chan struct{})
		var wg sync.WaitGroup
		start := time.Now()
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				s := MemSample{At: time.Since(start).Round(time.Second)}
				s.RSS, _ = measure.ProcessRSS(pid)
				s.Depth, _ = proc.storeDepth(ctx)
				proc.heapStats(ctx, &s)
				rr.mem = append(rr.mem, s)
			}
		})
		stopSampling = func() { close(done); wg.Wait() }
	}

	// The acked ids, as a bitmap indexed by id-StartID: connection c of C
	// sends ids c, c+C, c+2C, ..., at most ceil(Duration*Rate/C)+1 each.
	n := lc.Records
	if n <= 0 {
		perConn := int(lc.Duration.Seconds()*lc.Rate/float64(lc.Conns)) + 2
		n = perConn * lc.Conns
	}
	acked := newIDSet(lc.StartID, n)
	lc.OnAck = acked.Add
	lc.Addr = proc.Addr()

	var perf *PerfRecorder
	if profile && h.perf {
		if perf, err = StartPerf(ctx, pid, h.dir); err != nil {
			fmt.Fprintln(h.log, err)
		}
	}
	cpu0, pg0, self0 := measure.ProcessCPU(pid), measure.TreeCPU(h.pgPID), measure.CPU()
	busy0, io0 := measure.Machine()
	sendStart := time.Now()
	lr, err := loadgen.Run(ctx, lc)
	if lc.Duration > 0 {
		rr.settle = time.Since(sendStart) - lc.Duration
	}
	busy, io := measure.Machine()
	rr.cpu = CPU{Pipeline: measure.ProcessCPU(pid) - cpu0, Postgres: measure.TreeCPU(h.pgPID) - pg0, Client: measure.CPU() - self0,
		Machine: busy - busy0, IOWait: io - io0, Wall: time.Since(sendStart)}
	_, rr.peak = measure.ProcessRSS(pid)
	stopSampling()
	if perf != nil {
		// A profile that fails is reported, not fatal: it only explains.
		var perr error
		if rr.hot[0], rr.hot[1], perr = perf.Stop(ctx, 15); perr != nil {
			fmt.Fprintln(h.log, perr)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := errors.Join(err, proc.Stop(sctx)); err != nil {
		return runResult{}, err
	}
	rr.lr = lr
	if err := lr.Err(); err != nil {
		return rr, err
	}
	if lr.Acked+lr.Nacked != lr.Sent {
		return rr, fmt.Errorf("%d sent, %d acked, %d nacked: some unanswered", lr.Sent, lr.Acked, lr.Nacked)
	}
	if k := acked.outside.Load(); k > 0 {
		return rr, fmt.Errorf("%d acked ids outside the %d the client could send", k, n)
	}
	if got := acked.Len(); got != int(lr.Acked) {
		return rr, fmt.Errorf("%d acks counted, %d distinct acked ids", lr.Acked, got)
	}
	if rr.rows, err = checkStored(ctx, h.dsn, table, acked); err != nil {
		return rr, err
	}
	return rr, nil
}

// checkStored reads every id stored in table into a bitmap and verifies
// that every acked id is among them; it returns the rows in the table.
func checkStored(ctx context.Context, dsn, table string, acked *idSet) (int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("b4: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stored := newIDSet(acked.base, len(acked.words)*64)
	rows, err := conn.Query(ctx, "SELECT id FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return 0, fmt.Errorf("b4: read the stored ids: %w", err)
	}
	var n int64
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		n++
		stored.Add(id)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("b4: read the stored ids: %w", err)
	}
	if missing, first := acked.Missing(stored); missing > 0 {
		return n, fmt.Errorf("b4: %d of %d acked ids are not in table %s (the first: %d)", missing, acked.Len(), table, first)
	}
	return n, nil
}

func execSQL(ctx context.Context, dsn string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b4: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("b4: %s: %w", q, err)
		}
	}
	return nil
}

// Markdown renders the results as the body of B4's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "The example pipeline run by `pipectl run` in its own process, on a throwaway PostgreSQL with durable defaults, %d connections from the benchmark's process. Right before the overload, against the same setup: the sustained maximum, with the store queue under `overflow: block`, for %v (at most %d records), window 1,000 per connection. Overload: a fresh pipeline process with the store queue under `overflow: reject` (capacity %d), %.0f× that sustained rate offered for %v, window %d per connection.\n\n",
		c.Conns, c.SustainDuration, c.SustainRecords, r.QueueCap, c.Factor, c.Duration, c.Window)
	if c.Admission > 0 {
		fmt.Fprintf(&b, "In the overload run the source is under admission control, `admission: {target: %v}`: records past the rate it admits, and all while the store queue is full, are nacked busy at the door, before decoding.\n\n", c.Admission)
	}
	b.WriteString("RSS is the pipeline process's alone (/proc/PID/status, sampled every second; peak = its VmHWM); the load client keeps the acked ids in a bitmap in the other process. The store queue depth and the Go heap are from the pipeline's admin endpoint (/stats, /metrics).\n\n")
	b.WriteString("| figure | value |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| sustained maximum | %.0f rows/s |\n", r.Sustained)
	fmt.Fprintf(&b, "| offered | %.0f records/s (the client wrote %.0f/s: TCP backpressure holds it back) |\n", r.Offered, r.SentRate)
	fmt.Fprintf(&b, "| acked under overload | %.0f rows/s |\n", r.AckedRate)
	fmt.Fprintf(&b, "| acked / sustained | %.2f (target ≥ %.2f: %s) |\n", r.Ratio(), Target, report.Met(r.Ratio() >= Target))
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
	fmt.Fprintf(&b, "| pipeline peak RSS (VmHWM) | %.0f MiB |\n", float64(r.PeakRSS)/(1<<20))
	if len(r.Mem) >= 4 {
		h := len(r.Mem) / 2
		fmt.Fprintf(&b, "| pipeline max RSS first half / second half | %.0f / %.0f MiB |\n", float64(maxRSS(r.Mem[:h]))/(1<<20), float64(maxRSS(r.Mem[h:]))/(1<<20))
	}
	if g, ok := r.Growth(); ok {
		fmt.Fprintf(&b, "| RSS grows with time (last third of sending over the middle third: max, median; > 5%% in both) | %s (max %.0f / %.0f MiB, median %.0f / %.0f MiB; trend over the last two thirds %+.1f MiB/min) |\n",
			map[bool]string{true: "**yes**", false: "no"}[g.Grows], mib(g.LastMax), mib(g.MidMax), mib(g.LastMedian), mib(g.MidMedian), g.Slope/(1<<20))
		if g.LiveKnown {
			fmt.Fprintf(&b, "| live heap flat, no leak (next-GC goal / 2, its floor: the least in the last third over the middle third's; a leak is > 5%% or 4 MiB more) | %.0f / %.0f MiB (%s; largest %.0f / %.0f MiB) |\n",
				mib(g.LastLive), mib(g.MidLive), report.Met(!g.LiveGrows), mib(g.LastLiveMax), mib(g.MidLiveMax))
		}
	}
	fmt.Fprintf(&b, "| CPU, sustained run: pipeline / PostgreSQL / client / other processes; I/O wait | %s |\n", r.SustainCPU.cell())
	fmt.Fprintf(&b, "| CPU, overload run: pipeline / PostgreSQL / client / other processes; I/O wait | %s |\n", r.CPU.cell())
	fmt.Fprintf(&b, "| drain after sending stopped | %v |\n", r.SettleTime.Round(time.Millisecond))
	if len(r.Hot) > 0 {
		b.WriteString("\nWhere the pipeline process's CPU went under the same overload, in a run of its own after the measured one (perf record at 499 Hz over up to 10 s; perf's own CPU would be taken from the measured run; self time by function):\n\n```\n")
		for _, l := range r.Hot {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n")
		if len(r.HotInclusive) > 0 {
			b.WriteString("\nThe pipeline's own functions by inclusive time (the function and what it calls; children, self):\n\n```\n")
			for _, l := range r.HotInclusive {
				b.WriteString(l + "\n")
			}
			b.WriteString("```\n")
		}
	}
	if len(r.Mem) > 0 {
		b.WriteString("\nThe pipeline process's RSS, Go heap and store queue depth, sampled every second, and the rows acked in that second:\n\n| s | RSS MiB | heap MiB | heap goal MiB | heap held MiB | store depth | acked |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for i, m := range r.Mem {
			acked := "–"
			if i < len(r.PerSecond) {
				acked = fmt.Sprint(r.PerSecond[i])
			}
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f | %d | %s |\n", int(m.At.Seconds()), float64(m.RSS)/(1<<20), float64(m.HeapLive)/(1<<20),
				float64(m.HeapGoal)/(1<<20), float64(m.HeapHeld)/(1<<20), m.Depth, acked)
		}
	}
	return b.String()
}

// cell renders CPU as seconds and cores (CPU time over wall time).
func (c CPU) cell() string {
	w := c.Wall.Seconds()
	if w <= 0 {
		w = 1
	}
	cell := func(d time.Duration) string { return fmt.Sprintf("%.1f s (%.2f cores)", d.Seconds(), d.Seconds()/w) }
	pg := cell(c.Postgres)
	if c.Postgres == 0 {
		pg = "not measured"
	}
	return fmt.Sprintf("%s / %s / %s / %s; %s, over %.1f s",
		cell(c.Pipeline), pg, cell(c.Client), cell(c.Others()), cell(c.IOWait), c.Wall.Seconds())
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func medianRSS(ms []MemSample) int64 {
	v := make([]int64, len(ms))
	for i, m := range ms {
		v[i] = m.RSS
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// liveHeaps returns the live heaps (HeapGoal/2) of the samples that have
// one, sorted.
func liveHeaps(ms []MemSample) []int64 {
	var v []int64
	for _, m := range ms {
		if m.HeapGoal > 0 {
			v = append(v, int64(m.HeapGoal/2))
		}
	}
	slices.Sort(v)
	return v
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
