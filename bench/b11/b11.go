package b11

// This file runs B11: upserts (conflict: update) against new keys
// (conflict: ignore), alternating, every run checked.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/pipeline"
)

// Variant names.
const (
	Ignore = "ignore"
	Update = "update"
)

// Target of docs/BENCHMARKS.md: update rows/s over ignore's.
const Target = 0.5

// Config sizes the benchmark; the zero value is the full B11.
type Config struct {
	Records int // records per run; 0: 1,000,000
	Keys    int // update's key space; 0: 100,000
	Conns   int // client connections; 0: 64 (B3's)
	Window  int // unacked records per connection; 0: 1,000
	Runs    int // alternating repetitions; 0: 5
	// DSN of an existing server to use instead of a throwaway one; the
	// PostgreSQL CPU is then not measured.
	DSN string
	Log io.Writer // progress; nil: none
}

func (c *Config) fill() {
	c.Records = cmpOr(c.Records, 1_000_000)
	c.Keys = min(cmpOr(c.Keys, 100_000), c.Records)
	c.Conns = cmpOr(c.Conns, 64)
	c.Window = cmpOr(c.Window, 1000)
	c.Runs = cmpOr(c.Runs, 5)
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
	Rows       int64 // records acked
	Elapsed    time.Duration
	RowsPerSec float64
	ProcCPU    time.Duration // this process (server and load client)
	PGCPU      time.Duration // the postmaster and its children
}

// Result is what Run measured.
type Result struct {
	Config    Config
	Samples   map[string][]Sample // by variant, in run order
	PGVersion string
}

// Run runs B11 and returns its figures; every run is checked, and a
// failed check is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[string][]Sample{}}
	dsn, pgPID := cfg.DSN, 0
	if dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b11", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn, pgPID = srv.DSN(), pid
	}
	if err := rig.QueryString(ctx, dsn, "SHOW server_version", &res.PGVersion); err != nil {
		return nil, err
	}
	variants := []string{Ignore, Update}
	for r := range cfg.Runs {
		// Alternate which variant runs first.
		order := variants
		if r%2 == 1 {
			order = []string{Update, Ignore}
		}
		for _, v := range order {
			s, err := runOnce(ctx, cfg, dsn, pgPID, v, fmt.Sprintf("b11_%s_%d", v, r+1))
			if err != nil {
				return nil, fmt.Errorf("b11: run %d, %s: %w", r+1, v, err)
			}
			res.Samples[v] = append(res.Samples[v], s)
			fmt.Fprintf(cfg.Log, "b11: run %d %-6s %8d rows %10.0f rows/s  cpu %.1fs + pg %.1fs\n",
				r+1, v, s.Rows, s.RowsPerSec, s.ProcCPU.Seconds(), s.PGCPU.Seconds())
		}
	}
	return res, nil
}

// runOnce runs variant v once against a fresh table and checks it.
func runOnce(ctx context.Context, cfg Config, dsn string, pgPID int, v, table string) (Sample, error) {
	if err := rig.DropTable(ctx, dsn, table); err != nil {
		return Sample{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), dsn, table)
	// Write out what earlier runs left dirty, so that its checkpoint is
	// not charged to this run.
	if err := rig.ExecSQL(ctx, dsn, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	keys := int64(cfg.Records)
	conflict := "conflict: ignore\n"
	if v == Update {
		keys = int64(cfg.Keys)
		conflict = "conflict: update\n    version: seq\n    shard_by: [id]\n"
	}
	store := `    columns: {id: id, seq: seq, body: $}
    types: {id: bigint, seq: bigint}
    key: [id]
    ` + conflict + `    method: copy
    batch: {max: 2000, linger: 2ms}
    workers: 8
`
	backends, _ := rig.ClientBackends(pgPID)
	cpu0, pg0 := measure.CPU(), measure.TreeCPU(pgPID)
	p, addr, err := rig.StartYAML(ctx, "b11.yaml", storeYAML(store), env(dsn, table), pipeline.Options{})
	if err != nil {
		return Sample{}, err
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{
		Addr: addr, Conns: cfg.Conns, Records: cfg.Records, Window: cfg.Window,
		Record: func(b []byte, id int64) []byte { return keyedRecord(b, id%keys, id, id) },
	})
	err = errors.Join(err, stop(ctx, p))
	cpu := measure.CPU() - cpu0
	pg, werr := rig.SettledCPU(ctx, pgPID, backends)
	if err = errors.Join(err, werr); err != nil {
		return Sample{}, err
	}
	if err := lr.Err(); err != nil {
		return Sample{}, err
	}
	if lr.Acked != uint64(cfg.Records) || lr.Nacked != 0 {
		return Sample{}, fmt.Errorf("%d records: %d acked, %d nacked %v", cfg.Records, lr.Acked, lr.Nacked, lr.Nacks)
	}
	// A key's last record is the highest id with that key.
	k, last := strconv.FormatInt(keys, 10), strconv.Itoa(cfg.Records-1)
	if err := checkLatest(ctx, dsn, table, keys, "seq = id + "+k+" * (("+last+" - id) / "+k+")"); err != nil {
		return Sample{}, err
	}
	return Sample{Rows: int64(lr.Acked), Elapsed: lr.Elapsed, RowsPerSec: lr.AckedPerSec(), ProcCPU: cpu, PGCPU: pg - pg0}, nil
}

// storeYAML is B3's pipeline whose store holds the given settings
// (indented by four spaces) after its kind, DSN, table and create, with
// B3's connections, run slots and queue.
func storeYAML(settings string) string {
	return `name: b11
log: {level: warn}
stages:
  accept:
    kind: netio.tcp
    listen: ${B3_LISTEN}
    framing: lines
    max_frame: 64KiB
    ack: commit
    workers: 4
    concurrency: 2
    queue: {capacity: 8192, overflow: block}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${B3_DSN}
    table: ${B3_TABLE}
    create: true
` + settings + `    max_conns: 8
    concurrency: 2
    queue: {capacity: 16384, overflow: block}
`
}

func env(dsn, table string) map[string]string {
	return map[string]string{"B3_LISTEN": "127.0.0.1:0", "B3_DSN": dsn, "B3_TABLE": table}
}

// stopTimeout bounds stopping a pipeline.
const stopTimeout = 2 * time.Minute

// stop stops p, failing when it abandoned events.
func stop(ctx context.Context, p *pipeline.Pipeline) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	rep, err := p.Stop(sctx)
	if err == nil && rep.Abandoned > 0 {
		err = fmt.Errorf("pipeline stop abandoned %d events", rep.Abandoned)
	}
	return err
}

func rates(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.RowsPerSec
	}
	return out
}

// Ratios returns update's rows/s over ignore's, run by run.
func (r *Result) Ratios() []float64 {
	u, g := r.Samples[Update], r.Samples[Ignore]
	var out []float64
	for i := range min(len(u), len(g)) {
		if g[i].RowsPerSec > 0 {
			out = append(out, u[i].RowsPerSec/g[i].RowsPerSec)
		}
	}
	return out
}

// Met reports whether the median ratio meets the target.
func (r *Result) Met() bool { return report.Median(r.Ratios()) >= Target }

// Markdown renders the results as the body of B11's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b []byte
	c := r.Config
	b = fmt.Appendf(b, "PostgreSQL %s, throwaway, durable defaults (fsync on, synchronous_commit on). B3's pipeline and store settings (copy, batch 2,000, 8 workers), %d connections, window %d unacked per connection, %d records per run; %d runs, the two variants alternating (which goes first flips each run), each against a fresh table (id bigint primary key, seq bigint, body jsonb). ignore: every record a new key, conflict: ignore. update: key = record id mod %d, conflict: update, version: seq, shard_by: [id] (the first %d records insert, the rest overwrite). Every run checks every record acked and every key at its highest seq with that seq's record.\n\n",
		r.PGVersion, c.Conns, c.Window, c.Records, c.Runs, c.Keys, c.Keys)
	b = append(b, "| variant | rows/s median (min – max) | process CPU s / M rows | PostgreSQL CPU s / M rows |\n| --- | ---: | ---: | ---: |\n"...)
	for _, v := range []string{Ignore, Update} {
		ss := r.Samples[v]
		if len(ss) == 0 {
			continue
		}
		var pc, pg []float64
		for _, s := range ss {
			m := float64(s.Rows) / 1e6
			pc = append(pc, s.ProcCPU.Seconds()/m)
			pg = append(pg, s.PGCPU.Seconds()/m)
		}
		rs := rates(ss)
		b = fmt.Appendf(b, "| %s | %s (%s – %s) | %.1f | %.1f |\n", v, report.Rate(report.Median(rs)),
			report.Rate(slices.Min(rs)), report.Rate(slices.Max(rs)), report.Median(pc), report.Median(pg))
	}
	if rs := r.Ratios(); len(rs) > 0 {
		b = append(b, "\n| update / ignore | ratio per run: min / median / max | target | met (median per-run ratio) |\n| --- | ---: | ---: | --- |\n"...)
		b = fmt.Appendf(b, "| rows/s | %.2f / %.2f / %.2f | ≥ %.1f | %s |\n", slices.Min(rs), report.Median(rs), slices.Max(rs),
			Target, report.Met(r.Met()))
	}
	return string(b)
}
