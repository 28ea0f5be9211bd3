package b6

// This file runs B6: overload on a slow database, without and with
// admission control, sampling the pipeline.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/pipeline"
)

// Targets of docs/BENCHMARKS.md.
const (
	TargetAcked = 0.9 // acked rows/s over the sustained rate
	TargetP99   = 2.0 // p99 ack latency over the admission target
)

// Config sizes the benchmark; the zero value is the full B6.
type Config struct {
	Duration time.Duration // overload with admission control; 0: 15s
	// BaselineDuration is the overload without admission control, for
	// comparison; 0: Duration/3; negative: skipped.
	BaselineDuration time.Duration
	Factor           float64       // offered rate over the sustained one; 0: 5
	Conns            int           // client connections; 0: 64
	Target           time.Duration // admission.target; 0: 250ms
	Sleep            time.Duration // the trigger's sleep per statement; 0: 50ms
	SustainDuration  time.Duration // the run that measures the sustained rate; 0: 10s
	// Window is the unacked records per connection in the overload runs;
	// 0: 20,000, so that the client offers the rate rather than waiting.
	Window int
	DSN    string
	Log    io.Writer
}

func (c *Config) fill() {
	if c.Duration <= 0 {
		c.Duration = 15 * time.Second
	}
	if c.BaselineDuration == 0 {
		c.BaselineDuration = c.Duration / 3
	}
	if c.Factor <= 0 {
		c.Factor = 5
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.Target <= 0 {
		c.Target = 250 * time.Millisecond
	}
	if c.Sleep <= 0 {
		c.Sleep = 50 * time.Millisecond
	}
	if c.SustainDuration <= 0 {
		c.SustainDuration = 10 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 20_000
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sample is the pipeline's figures at one moment of the admission run.
type Sample struct {
	At           time.Duration
	AdmitRate    float64       // records/s the source admits at most; 0: not limiting
	AdmitP99     time.Duration // the p99 the admission controller saw last
	Shed         uint64        // records refused at the door so far
	StoreBatch   int
	StoreWorkers int
	StoreDepth   int
	RSS          int64
}

// Overload is one run of the benchmark: offered load and what came of it.
type Overload struct {
	Duration  time.Duration
	Offered   float64 // records/s asked of the client
	Sent      uint64
	Acked     uint64
	Nacked    uint64
	Nacks     map[string]uint64
	AckedRate float64       // acked per second over the offered period
	P99       time.Duration // ack latency, every acked record
	P50       time.Duration
	Seconds   []loadgen.Second
	Errors    []error // connections that ended badly (records unanswered)
	PeakRSS   int64   // VmHWM of the benchmark's process over the run
	Samples   []Sample
	Stored    int64 // rows in the table afterwards
}

// Unanswered is what the client sent and got no reply for.
func (r *Overload) Unanswered() uint64 {
	if r.Acked+r.Nacked >= r.Sent {
		return 0
	}
	return r.Sent - r.Acked - r.Nacked
}

// OnlyBusy reports whether every nack said busy.
func (r *Overload) OnlyBusy() bool {
	for k, v := range r.Nacks {
		if k != "busy" && v > 0 {
			return false
		}
	}
	return true
}

// Result is what the benchmark measured.
type Result struct {
	Config    Config
	Sustained float64 // rows/s with backpressure only, closed loop
	Admission *Overload
	Baseline  *Overload // nil when skipped
	PGVersion string
}

// AckedRatio is the admission run's acked rate over the sustained rate.
func (r *Result) AckedRatio() float64 { return r.Admission.AckedRate / r.Sustained }

// P99Ratio is the admission run's p99 over the target.
func (r *Result) P99Ratio() float64 { return float64(r.Admission.P99) / float64(r.Config.Target) }

// Run runs B6: every run is checked (every acked id stored); records
// left unanswered are reported, not an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg}
	dsn := cfg.DSN
	if dsn == "" {
		srv, _, err := rig.StartPostgres(ctx, "b6", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn = srv.DSN()
	}
	if err := rig.QueryString(ctx, dsn, "SHOW server_version", &res.PGVersion); err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, dsn: dsn}

	sus, err := h.run(ctx, "b6_sustain", 0, loadgen.Config{Conns: cfg.Conns, Duration: cfg.SustainDuration, Window: 1000})
	if err != nil {
		return nil, fmt.Errorf("b6: sustained run: %w", err)
	}
	res.Sustained = sus.AckedRate
	fmt.Fprintf(cfg.Log, "b6: sustained %.0f rows/s (store pinned at batch 200, 4 workers, 4 connections; %s per statement)\n", res.Sustained, cfg.Sleep)
	offered := cfg.Factor * res.Sustained
	over := loadgen.Config{Conns: cfg.Conns, Rate: offered, Window: cfg.Window, AckTimeout: time.Minute}

	fmt.Fprintf(cfg.Log, "b6: offering %.0f records/s for %v with admission: {target: %v}...\n", offered, cfg.Duration, cfg.Target)
	lc := over
	lc.Duration = cfg.Duration
	if res.Admission, err = h.run(ctx, "b6_admission", cfg.Target, lc); err != nil {
		return nil, fmt.Errorf("b6: admission run: %w", err)
	}
	a := res.Admission
	fmt.Fprintf(cfg.Log, "b6: acked %.0f rows/s (%.2f of sustained), p99 %v (%.2f of the target), %d sent, %d acked, %d nacked %v, %d unanswered\n",
		a.AckedRate, res.AckedRatio(), a.P99, res.P99Ratio(), a.Sent, a.Acked, a.Nacked, a.Nacks, a.Unanswered())

	if cfg.BaselineDuration > 0 {
		fmt.Fprintf(cfg.Log, "b6: offering %.0f records/s for %v without admission control...\n", offered, cfg.BaselineDuration)
		lc := over
		lc.Duration = cfg.BaselineDuration
		if res.Baseline, err = h.run(ctx, "b6_baseline", 0, lc); err != nil {
			return nil, fmt.Errorf("b6: baseline run: %w", err)
		}
		b := res.Baseline
		fmt.Fprintf(cfg.Log, "b6: without admission: acked %.0f rows/s, p99 %v, %d unanswered of %d\n", b.AckedRate, b.P99, b.Unanswered(), b.Sent)
	}
	return res, nil
}

type harness struct {
	cfg Config
	dsn string
}

// pipelineYAML is the pipeline under test: parse inline, the store pinned
// at batch 200, 4 workers, 4 connections; admission control on the source
// when target > 0.
func pipelineYAML(target time.Duration) string {
	adm := ""
	if target > 0 {
		adm = fmt.Sprintf("    admission: {target: %s}\n", target)
	}
	return `name: b6
log: {level: warn}
stages:
  accept:
    kind: netio.tcp
    listen: ${B6_LISTEN}
` + adm + `    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${B6_DSN}
    table: ${B6_TABLE}
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: 200
    workers: 4
    max_conns: 4
`
}

// run makes a slow table, runs the pipeline on it under lc, and checks
// that every acked id is stored.
func (h *harness) run(ctx context.Context, table string, target time.Duration, lc loadgen.Config) (*Overload, error) {
	if err := rig.ExecSQL(ctx, h.dsn,
		"DROP TABLE IF EXISTS "+rig.Ident(table),
		"CREATE TABLE "+rig.Ident(table)+" (id bigint PRIMARY KEY, body jsonb)",
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION b6_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(%g); RETURN NULL; END $$`, h.cfg.Sleep.Seconds()),
		"CREATE TRIGGER slow BEFORE INSERT ON "+rig.Ident(table)+" FOR EACH STATEMENT EXECUTE FUNCTION b6_slow()",
		"CHECKPOINT"); err != nil {
		return nil, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), h.dsn, table)
	p, addr, err := startPipeline(ctx, pipelineYAML(target), h.dsn, table)
	if err != nil {
		return nil, err
	}
	r := &Overload{Duration: lc.Duration, Offered: lc.Rate}
	measure.ResetPeakRSS()
	stop := sample(p, &r.Samples)
	lc.Addr, lc.PerSecond, lc.CollectIDs = addr, true, true
	lr, err := loadgen.Run(ctx, lc)
	stop()
	r.PeakRSS = measure.PeakRSS()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, serr := p.Stop(sctx); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return nil, err
	}
	r.Sent, r.Acked, r.Nacked, r.Nacks = lr.Sent, lr.Acked, lr.Nacked, lr.Nacks
	r.P99, r.P50 = lr.Latency.Quantile(0.99), lr.Latency.Quantile(0.5)
	r.Seconds, r.Errors = lr.Seconds, lr.Errors
	secs := max(1, int(lc.Duration/time.Second))
	var during uint64
	for i := 0; i < secs && i < len(lr.Timeline); i++ {
		during += lr.Timeline[i]
	}
	r.AckedRate = float64(during) / float64(min(secs, max(len(lr.Timeline), 1)))
	if r.Stored, err = rig.CheckStored(ctx, h.dsn, table, lr.AckedIDs); err != nil {
		return r, err
	}
	return r, nil
}

func startPipeline(ctx context.Context, yaml, dsn, table string) (*pipeline.Pipeline, string, error) {
	env := map[string]string{"B6_LISTEN": "127.0.0.1:0", "B6_DSN": dsn, "B6_TABLE": table}
	return rig.StartYAML(ctx, "b6.yaml", yaml, env, pipeline.Options{DrainTimeout: 2 * time.Minute})
}

// sample reads the pipeline's figures every 250 ms into *out until the
// returned func is called.
func sample(p *pipeline.Pipeline, out *[]Sample) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			s := Sample{At: time.Since(start), RSS: measure.RSS()}
			if st, _ := p.StageStats("accept"); st.Control != nil && st.Control.Admission != nil {
				a := st.Control.Admission
				s.AdmitRate, s.AdmitP99, s.Shed = a.Rate, time.Duration(a.P99Ms*1e6), a.Shed
			}
			if st, _ := p.StageStats("store"); st.Control != nil {
				s.StoreBatch, s.StoreWorkers, s.StoreDepth = st.Control.Batch.Now, st.Control.Workers.Now, st.Queue.Depth
			}
			*out = append(*out, s)
		}
	})
	return func() { close(done); wg.Wait() }
}

// nackReasons lists the reasons of r's nacks with their counts, sorted.
func nackReasons(r *Overload) string {
	if len(r.Nacks) == 0 {
		return "none"
	}
	var s string
	for _, k := range slices.Sorted(maps.Keys(r.Nacks)) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%q: %d", k, r.Nacks[k])
	}
	return s
}
