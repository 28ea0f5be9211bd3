package b3

// This file runs B3: the example pipeline and its baselines on one
// throwaway PostgreSQL, every run checked.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Variant names.
const (
	Pipeline = "pipeline"
	Copy     = "copy"
	Naive    = "naive"
	Chan     = "chan"
)

// Targets of docs/BENCHMARKS.md: pipeline rows/s over each baseline's.
var targets = map[string]float64{Copy: 0.5, Naive: 20, Chan: 1.2}

// TargetPGRatio is the most PostgreSQL's CPU per row may be when the
// pipeline feeds it, over what it is when psql \copy does (issue 23; the
// median of the per-run ratios).
const TargetPGRatio = 1.2

// Config sizes the benchmark; the zero value is the full B3.
type Config struct {
	Records      int // records per run of pipeline, copy and chan; 0: 1,000,000
	NaiveRecords int // records per naive run (it is slow); 0: 50,000
	Conns        int // client connections; 0: 64
	Window       int // unacked records per connection; 0: 1,000
	Runs         int // alternating repetitions; 0: 3
	// LatencyRecords is the size of the half-rate latency runs; 0 means
	// Records/4; negative skips them.
	LatencyRecords int
	// Variants to run; nil means all four. The pipeline always runs.
	Variants []string
	// DSN of an existing server to use instead of a throwaway one; the
	// PostgreSQL CPU is then not measured.
	DSN string
	// CPUProfile, if set, is a file to write a CPU profile of the first
	// pipeline run to.
	CPUProfile string
	Log        io.Writer // progress; nil: none
}

func (c *Config) fill() {
	c.Records = cmpOr(c.Records, 1_000_000)
	c.NaiveRecords = cmpOr(c.NaiveRecords, 50_000)
	c.Conns = cmpOr(c.Conns, 64)
	c.Window = cmpOr(c.Window, 1000)
	c.Runs = cmpOr(c.Runs, 3)
	if c.LatencyRecords == 0 {
		c.LatencyRecords = c.Records / 4
	}
	if len(c.Variants) == 0 {
		c.Variants = []string{Pipeline, Copy, Chan, Naive}
	}
	if !slices.Contains(c.Variants, Pipeline) {
		c.Variants = append([]string{Pipeline}, c.Variants...)
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Sample is one run of one variant.
type Sample struct {
	Rows       int64         // rows acked (copy: copied)
	Elapsed    time.Duration // first send to last ack (copy: psql's run)
	RowsPerSec float64
	ProcCPU    time.Duration // this process (server and load client); copy: psql's
	PGCPU      time.Duration // the postmaster and its children
	PeakRSS    int64         // VmHWM over the run; 0 for copy
}

// Latency is a rate-limited run's ack latency.
type Latency struct {
	Rate     float64 // offered records/s
	Achieved float64 // acked records/s
	P50, P99 time.Duration
	Max      time.Duration
}

// Result is what Run measured.
type Result struct {
	Config  Config
	Samples map[string][]Sample // by variant, in run order
	// Latency at half the pipeline's median rate, for pipeline and chan.
	Latency map[string]Latency
	// PGVersion is the server's version string.
	PGVersion string
}

// Run runs B3 and returns its figures; every run is checked (every record
// acked once and stored), and a failed check is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[string][]Sample{}, Latency: map[string]Latency{}}
	dsn, pgPID := cfg.DSN, 0
	if dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b3", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn, pgPID = srv.DSN(), pid
	}
	if err := rig.QueryString(ctx, dsn, "SHOW server_version", &res.PGVersion); err != nil {
		return nil, err
	}
	var copyFile string
	if slices.Contains(cfg.Variants, Copy) {
		dir, err := os.MkdirTemp("", "b3-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		// psql runs as root and reads the file itself (\copy), so any
		// directory works.
		copyFile = filepath.Join(dir, "rows.tsv")
		if err := rig.WriteCopyFile(copyFile, 0, int64(cfg.Records)); err != nil {
			return nil, err
		}
	}
	h := &harness{cfg: cfg, dsn: dsn, pgPID: pgPID, copyFile: copyFile}
	for r := range cfg.Runs {
		// Rotate the order so no variant always runs first (cold) or
		// after the same neighbour.
		order := append(slices.Clone(cfg.Variants[r%len(cfg.Variants):]), cfg.Variants[:r%len(cfg.Variants)]...)
		for _, v := range order {
			s, err := h.run(ctx, v, r)
			if err != nil {
				return nil, fmt.Errorf("b3: run %d, %s: %w", r+1, v, err)
			}
			res.Samples[v] = append(res.Samples[v], s)
			fmt.Fprintf(cfg.Log, "b3: run %d %-8s %8d rows %10.0f rows/s  cpu %.1fs + pg %.1fs  rss %s\n",
				r+1, v, s.Rows, s.RowsPerSec, s.ProcCPU.Seconds(), s.PGCPU.Seconds(), report.MiB(s.PeakRSS))
		}
	}
	if cfg.LatencyRecords > 0 {
		rate := report.Median(rates(res.Samples[Pipeline])) / 2
		for _, v := range []string{Pipeline, Chan} {
			if !slices.Contains(cfg.Variants, v) {
				continue
			}
			l, err := h.latency(ctx, v, rate)
			if err != nil {
				return nil, fmt.Errorf("b3: latency run, %s: %w", v, err)
			}
			res.Latency[v] = l
			fmt.Fprintf(cfg.Log, "b3: latency %-8s at %.0f/s: p50 %v p99 %v\n", v, rate, l.P50, l.P99)
		}
	}
	return res, nil
}

type harness struct {
	cfg      Config
	dsn      string
	pgPID    int
	copyFile string
	profiled bool
}

func (h *harness) run(ctx context.Context, v string, r int) (Sample, error) {
	table := fmt.Sprintf("b3_%s_%d", v, r+1)
	if err := rig.CreateTable(ctx, h.dsn, table); err != nil {
		return Sample{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), h.dsn, table)
	// Write out what earlier runs left dirty, so that its checkpoint is
	// not charged to this run's PostgreSQL CPU and throughput.
	if err := rig.ExecSQL(ctx, h.dsn, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	if v == Copy {
		return h.runCopy(ctx, table)
	}
	records := h.cfg.Records
	if v == Naive {
		records = h.cfg.NaiveRecords
	}
	debug.FreeOSMemory()
	measure.ResetPeakRSS()
	backends, _ := rig.ClientBackends(h.pgPID)
	cpu0, pg0 := measure.CPU(), measure.TreeCPU(h.pgPID)
	srv, err := h.start(ctx, v, table)
	if err != nil {
		return Sample{}, err
	}
	var stopProfile func()
	if v == Pipeline && h.cfg.CPUProfile != "" && !h.profiled {
		h.profiled = true
		if stopProfile, err = startProfile(h.cfg.CPUProfile); err != nil {
			srv.Stop(ctx)
			return Sample{}, err
		}
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{
		Addr: srv.Addr(), Conns: h.cfg.Conns, Records: records, Window: h.cfg.Window, CollectIDs: true,
	})
	if stopProfile != nil {
		stopProfile()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	err = errors.Join(err, srv.Stop(sctx))
	cpu := measure.CPU() - cpu0
	pg, werr := rig.SettledCPU(ctx, h.pgPID, backends)
	err = errors.Join(err, werr)
	s := Sample{ProcCPU: cpu, PGCPU: pg - pg0, PeakRSS: measure.PeakRSS()}
	if err != nil {
		return s, err
	}
	if err := check(ctx, h.dsn, table, lr, records); err != nil {
		return s, err
	}
	s.Rows, s.Elapsed, s.RowsPerSec = int64(lr.Acked), lr.Elapsed, lr.AckedPerSec()
	return s, nil
}

// check verifies a full run: every record acked, none nacked, every acked
// id stored, nothing else stored.
func check(ctx context.Context, dsn, table string, lr *loadgen.Result, records int) error {
	if err := lr.Err(); err != nil {
		return err
	}
	if lr.Acked != uint64(records) || lr.Nacked != 0 {
		return fmt.Errorf("%d records: %d acked, %d nacked %v", records, lr.Acked, lr.Nacked, lr.Nacks)
	}
	rows, err := rig.CheckStored(ctx, dsn, table, lr.AckedIDs)
	if err != nil {
		return err
	}
	if rows != int64(records) {
		return fmt.Errorf("table %s holds %d rows, want %d", table, rows, records)
	}
	return nil
}

func (h *harness) start(ctx context.Context, v, table string) (rig.Server, error) {
	switch v {
	case Pipeline:
		s, _, err := rig.StartPipeline(ctx, h.dsn, table, "block")
		return s, err
	case Chan:
		return rig.StartChan(ctx, h.dsn, table)
	case Naive:
		return rig.StartNaive(ctx, h.dsn, table)
	}
	return nil, fmt.Errorf("unknown variant %q", v)
}

func (h *harness) latency(ctx context.Context, v string, rate float64) (Latency, error) {
	table := "b3_latency_" + v
	if err := rig.CreateTable(ctx, h.dsn, table); err != nil {
		return Latency{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), h.dsn, table)
	srv, err := h.start(ctx, v, table)
	if err != nil {
		return Latency{}, err
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{
		Addr: srv.Addr(), Conns: h.cfg.Conns, Records: h.cfg.LatencyRecords, Window: h.cfg.Window,
		Rate: rate, CollectIDs: true,
	})
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := errors.Join(err, srv.Stop(sctx)); err != nil {
		return Latency{}, err
	}
	if err := check(ctx, h.dsn, table, lr, h.cfg.LatencyRecords); err != nil {
		return Latency{}, err
	}
	return Latency{Rate: rate, Achieved: lr.AckedPerSec(), P50: lr.Latency.Quantile(0.5),
		P99: lr.Latency.Quantile(0.99), Max: lr.Latency.Max()}, nil
}

// runCopy times psql \copy of the same rows into table.
func (h *harness) runCopy(ctx context.Context, table string) (Sample, error) {
	backends, _ := rig.ClientBackends(h.pgPID)
	pg0 := measure.TreeCPU(h.pgPID)
	cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", h.dsn,
		"-c", `\copy `+rig.Ident(table)+` (id, body) FROM '`+h.copyFile+`'`)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		return Sample{}, fmt.Errorf("psql \\copy: %w: %s", err, out)
	}
	pg, err := rig.SettledCPU(ctx, h.pgPID, backends)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{Rows: int64(h.cfg.Records), Elapsed: el, RowsPerSec: float64(h.cfg.Records) / el.Seconds(),
		ProcCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), PGCPU: pg - pg0}
	// No peak RSS: a child's ru_maxrss counts the parent's pages it
	// shared before exec.
	var n int64
	if err := rig.QueryInt(ctx, h.dsn, "SELECT count(*) FROM "+rig.Ident(table), &n); err != nil {
		return s, err
	}
	if n != int64(h.cfg.Records) {
		return s, fmt.Errorf("table %s holds %d rows after \\copy, want %d", table, n, h.cfg.Records)
	}
	return s, nil
}

func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// stopTimeout bounds stopping a variant.
const stopTimeout = 2 * time.Minute
