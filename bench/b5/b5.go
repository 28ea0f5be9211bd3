package b5

// This file runs B5: the untuned pipeline against tuned ones, alternating,
// sampling the untuned one's knobs, every run checked.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/pipeline"
)

// Variant names.
const (
	Untuned = "untuned"
	Tuned   = "tuned"
	Copy    = "copy4"
)

// Targets of docs/BENCHMARKS.md: untuned rows/s over each baseline's.
var Targets = map[string]float64{Tuned: 0.9, Copy: 0.75}

// UntunedYAML is the pipeline written without tuning keys: three stages,
// parse its own stage, no batch, workers or queue keys.
const UntunedYAML = `name: b5-untuned
log: {level: warn}
stages:
  accept:
    kind: netio.tcp
    listen: ${B5_LISTEN}
    next: parse
  parse:
    kind: process.json
    require: [id]
    next: store
  store:
    kind: db.postgres
    dsn: ${B5_DSN}
    table: ${B5_TABLE}
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
`

// TunedYAML is the same pipeline tuned by hand, with the numbers
// pipeline.yaml carried before the controllers.
const TunedYAML = `name: b5-tuned
log: {level: warn}
stages:
  accept:
    kind: netio.tcp
    listen: ${B5_LISTEN}
    workers: 4
    concurrency: 2
    queue: {capacity: 8192}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${B5_DSN}
    table: ${B5_TABLE}
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: {max: 2000, linger: 2ms}
    workers: 8
    max_conns: 8
    concurrency: 2
    queue: {capacity: 16384}
`

// Config sizes the benchmark; the zero value is the full B5.
type Config struct {
	Records int // records per run of each variant; 0: 1,000,000
	Conns   int // client connections; 0: 64
	Window  int // unacked records per connection; 0: 1,000
	Runs    int // alternating repetitions; 0: 3
	Copies  int // parallel psql \copy processes; 0: 4
	DSN     string
	Log     io.Writer
}

func (c *Config) fill() {
	c.Records = cmp(c.Records, 1_000_000)
	c.Conns = cmp(c.Conns, 64)
	c.Window = cmp(c.Window, 1000)
	c.Runs = cmp(c.Runs, 3)
	c.Copies = cmp(c.Copies, 4)
	if c.Log == nil {
		c.Log = io.Discard
	}
}

func cmp(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Sample is one run of one variant.
type Sample struct {
	Rows       int64
	Elapsed    time.Duration
	RowsPerSec float64
	// Knobs is the untuned pipeline's store and parse stages, sampled every
	// 100 ms from the first record to the last ack.
	Knobs []KnobSample
}

// KnobSample is the untuned pipeline's knobs at one moment.
type KnobSample struct {
	At                         time.Duration
	StoreBatch, StoreWorkers   int
	ParseBatch, ParseWorkers   int
	StoreDecisions, StoreDepth int
}

// Result is what Run measured.
type Result struct {
	Config    Config
	Samples   map[string][]Sample // by variant, in run order
	PGVersion string
}

// Run runs B5. Every run is checked: every record acked once and stored.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[string][]Sample{}}
	dsn := cfg.DSN
	if dsn == "" {
		srv, _, err := rig.StartPostgres(ctx, "b5", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn = srv.DSN()
	}
	if err := rig.QueryString(ctx, dsn, "SHOW server_version", &res.PGVersion); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "b5-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files, err := writeCopyFiles(dir, cfg.Records, cfg.Copies)
	if err != nil {
		return nil, err
	}
	variants := []string{Untuned, Tuned, Copy}
	for r := range cfg.Runs {
		order := append(slices.Clone(variants[r%len(variants):]), variants[:r%len(variants)]...)
		for _, v := range order {
			table := fmt.Sprintf("b5_%s_%d", strings.TrimSuffix(v, "4"), r+1)
			s, err := runOne(ctx, cfg, dsn, table, v, files)
			if err != nil {
				return nil, fmt.Errorf("b5: run %d, %s: %w", r+1, v, err)
			}
			res.Samples[v] = append(res.Samples[v], s)
			fmt.Fprintf(cfg.Log, "b5: run %d %-8s %8d rows %10.0f rows/s\n", r+1, v, s.Rows, s.RowsPerSec)
		}
	}
	return res, nil
}

func runOne(ctx context.Context, cfg Config, dsn, table, v string, files []string) (Sample, error) {
	if err := rig.CreateTable(ctx, dsn, table); err != nil {
		return Sample{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), dsn, table)
	if err := rig.ExecSQL(ctx, dsn, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	if v == Copy {
		return runCopies(ctx, dsn, table, files, cfg.Records)
	}
	yaml := TunedYAML
	if v == Untuned {
		yaml = UntunedYAML
	}
	p, addr, err := startPipeline(ctx, yaml, dsn, table)
	if err != nil {
		return Sample{}, err
	}
	var s Sample
	stopSampling := func() {}
	if v == Untuned {
		stopSampling = sampleKnobs(p, &s.Knobs)
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: cfg.Conns, Records: cfg.Records, Window: cfg.Window, CollectIDs: true})
	stopSampling()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	rep, serr := p.Stop(sctx)
	if serr == nil && rep.Abandoned > 0 {
		serr = fmt.Errorf("stop abandoned %d events", rep.Abandoned)
	}
	if err := errors.Join(err, serr); err != nil {
		return s, err
	}
	if err := lr.Err(); err != nil {
		return s, err
	}
	if lr.Acked != uint64(cfg.Records) || lr.Nacked != 0 {
		return s, fmt.Errorf("%d acked, %d nacked of %d", lr.Acked, lr.Nacked, cfg.Records)
	}
	rows, err := rig.CheckStored(ctx, dsn, table, lr.AckedIDs)
	if err != nil {
		return s, err
	}
	if rows != int64(cfg.Records) {
		return s, fmt.Errorf("table holds %d rows, want %d", rows, cfg.Records)
	}
	s.Rows, s.Elapsed, s.RowsPerSec = int64(lr.Acked), lr.Elapsed, lr.AckedPerSec()
	return s, nil
}

func startPipeline(ctx context.Context, yaml, dsn, table string) (*pipeline.Pipeline, string, error) {
	env := map[string]string{"B5_LISTEN": "127.0.0.1:0", "B5_DSN": dsn, "B5_TABLE": table}
	return rig.StartYAML(ctx, "b5.yaml", yaml, env, pipeline.Options{})
}

// sampleKnobs samples the untuned pipeline's store and parse stages every
// 100 ms into *out until the returned func is called.
func sampleKnobs(p *pipeline.Pipeline, out *[]KnobSample) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			k := KnobSample{At: time.Since(start)}
			if st, _ := p.StageStats("store"); st.Control != nil {
				k.StoreBatch, k.StoreWorkers, k.StoreDecisions = st.Control.Batch.Now, st.Control.Workers.Now, int(st.Control.Decisions)
				k.StoreDepth = st.Queue.Depth
			}
			if st, _ := p.StageStats("parse"); st.Control != nil {
				k.ParseBatch, k.ParseWorkers = st.Control.Batch.Now, st.Control.Workers.Now
			}
			*out = append(*out, k)
		}
	})
	return func() { close(done); wg.Wait() }
}

// runCopies runs the psql \copy processes at once, each loading its file,
// and measures from the first start to the last end.
func runCopies(ctx context.Context, dsn, table string, files []string, records int) (Sample, error) {
	start := time.Now()
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
				"-c", `\copy `+rig.Ident(table)+` (id, body) FROM '`+f+`'`)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("psql \\copy: %w: %s", err, out)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return Sample{}, err
	}
	var n int64
	if err := rig.QueryInt(ctx, dsn, "SELECT count(*) FROM "+rig.Ident(table), &n); err != nil {
		return Sample{}, err
	}
	if n != int64(records) {
		return Sample{}, fmt.Errorf("table %s holds %d rows after \\copy, want %d", table, n, records)
	}
	return Sample{Rows: n, Elapsed: el, RowsPerSec: float64(n) / el.Seconds()}, nil
}

// writeCopyFiles writes the records 0..n-1, as the pipelines receive them,
// in COPY text format, split into k files.
func writeCopyFiles(dir string, n, k int) ([]string, error) {
	var files []string
	for i := range k {
		lo, hi := n*i/k, n*(i+1)/k
		f := filepath.Join(dir, fmt.Sprintf("rows%d.tsv", i))
		if err := rig.WriteCopyFile(f, int64(lo), int64(hi)); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// Ratios returns untuned rows/s over v's, run by run.
func (r *Result) Ratios(v string) []float64 {
	u, b := r.Samples[Untuned], r.Samples[v]
	var out []float64
	for i := range min(len(u), len(b)) {
		out = append(out, u[i].RowsPerSec/b[i].RowsPerSec)
	}
	return out
}

// Met reports whether the median ratio over v meets its target.
func (r *Result) Met(v string) bool { return report.Median(r.Ratios(v)) >= Targets[v] }
