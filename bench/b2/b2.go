package b2

// This file runs B2: the framework's three-stage chain and the channel
// chain, alternating, and renders their section.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// Target is B2's goal: framework items/s over channel items/s, at least.
const Target = 1.5

// Config says how to run B2. The zero value runs the benchmark as
// docs/BENCHMARKS.md describes it.
type Config struct {
	Items    int // items per run; 0 means 1,000,000
	Runs     int // measured runs of each side; 0 means 5
	Workers  int // goroutines per stage; 0 means 4
	Capacity int // queue capacity of every stage and channel; 0 means 1024
	Batch    int // events a framework worker takes at once; 0 means 64
	// Concurrency is the framework's run-slot limit per stage; 0 means
	// GOMAXPROCS (the framework's default).
	Concurrency int
}

func (c *Config) fill() {
	if c.Items <= 0 {
		c.Items = 1_000_000
	}
	if c.Runs <= 0 {
		c.Runs = 5
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Capacity <= 0 {
		c.Capacity = 1024
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
}

// Side names the two implementations.
const (
	Pipeline = "pipeline"
	Channels = "channels"
)

// Result is one measured run.
type Result struct {
	Side  string // Pipeline or Channels
	Run   int    // from 1
	Items int
	Took  time.Duration // wall time
	// CPU is the process's user and system time during the run: on a
	// shared machine it moves less with other load than Took does.
	CPU time.Duration
}

// ItemsPerSec is the run's throughput.
func (r Result) ItemsPerSec() float64 { return float64(r.Items) / r.Took.Seconds() }

// CPUNsPerItem is the CPU time the run spent per item, in nanoseconds.
func (r Result) CPUNsPerItem() float64 { return float64(r.CPU.Nanoseconds()) / float64(r.Items) }

// Run measures cfg.Runs runs of each side, alternating (and alternating
// which side goes first), after one unmeasured warm-up run of each. It
// stops early with ctx's error when ctx ends.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.fill()
	warm := cfg
	warm.Items = max(cfg.Items/10, 1)
	if _, err := RunPipeline(ctx, warm); err != nil {
		return nil, err
	}
	if _, err := RunChannels(ctx, warm); err != nil {
		return nil, err
	}
	var rs []Result
	for i := 1; i <= cfg.Runs; i++ {
		sides := []string{Pipeline, Channels}
		if i%2 == 0 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			if err := ctx.Err(); err != nil {
				return rs, err
			}
			run := RunPipeline
			if side == Channels {
				run = RunChannels
			}
			cpu0 := measure.CPU()
			took, err := run(ctx, cfg)
			cpu := measure.CPU() - cpu0
			if err != nil {
				return rs, err
			}
			rs = append(rs, Result{Side: side, Run: i, Items: cfg.Items, Took: took, CPU: cpu})
		}
	}
	return rs, nil
}

// Rates returns the items/s of side's runs, in run order.
func Rates(rs []Result, side string) []float64 {
	var v []float64
	for _, r := range rs {
		if r.Side == side {
			v = append(v, r.ItemsPerSec())
		}
	}
	return v
}

// Ratio returns the framework's median items/s over the channels' median.
func Ratio(rs []Result) float64 {
	c := report.Median(Rates(rs, Channels))
	if c == 0 {
		return 0
	}
	return report.Median(Rates(rs, Pipeline)) / c
}

// RunRatios returns pipeline over channels items/s, run by run.
func RunRatios(rs []Result) []float64 {
	p, c := map[int]float64{}, map[int]float64{}
	for _, r := range rs {
		if r.Side == Pipeline {
			p[r.Run] = r.ItemsPerSec()
		} else {
			c[r.Run] = r.ItemsPerSec()
		}
	}
	var out []float64
	for run, pv := range p {
		if cv := c[run]; cv > 0 {
			out = append(out, pv/cv)
		}
	}
	return out
}

// Markdown renders rs as the body of B2's section of bench/RESULTS.md.
func Markdown(rs []Result) string {
	var b strings.Builder
	b.WriteString("| side | items/s min / median / max | CPU per item (median) |\n")
	b.WriteString("| --- | ---: | ---: |\n")
	for _, side := range []string{Pipeline, Channels} {
		var cpu []float64
		for _, r := range rs {
			if r.Side == side {
				cpu = append(cpu, r.CPUNsPerItem())
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f ns |\n", side, report.Summarize(Rates(rs, side)).Rates(), report.Median(cpu))
	}
	ratio := Ratio(rs)
	fmt.Fprintf(&b, "\nRatio pipeline / channels (medians): **%.2f** (target ≥ %.1f: %s); per run min / median / max: %s; %d runs of each side.\n",
		ratio, Target, report.Met(ratio >= Target), report.Summarize(RunRatios(rs)).Ratios(), len(Rates(rs, Pipeline)))
	return b.String()
}

// RunPipeline moves cfg.Items items through a source and three stages
// built by pipeline.New, and returns the time from Start until Stop has
// drained everything.
func RunPipeline(ctx context.Context, cfg Config) (time.Duration, error) {
	cfg.fill()
	var sum atomic.Uint64
	src := &producer{n: cfg.Items}
	reg := stage.NewRegistry()
	step := func(last bool) func(stage.Config, stage.Env) (stage.Handler, error) {
		return func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
				var s uint64
				for _, ev := range batch {
					s += ev.Seq + uint64(len(ev.Payload))
					if last {
						ev.Done(nil)
					} else {
						_ = out.Emit(ctx, ev)
					}
				}
				if last {
					sum.Add(s)
				}
				return nil
			}), nil
		}
	}
	for _, k := range []stage.Kind{
		{Name: "b2.source", NewSource: func(stage.Config, stage.Env) (stage.Source, error) { return src, nil }},
		{Name: "b2.step", NewHandler: step(false)},
		{Name: "b2.last", Terminal: true, NewHandler: step(true)},
	} {
		if err := reg.Register(k); err != nil {
			return 0, err
		}
	}
	set := stage.Settings{Workers: cfg.Workers, Concurrency: cfg.Concurrency, Capacity: cfg.Capacity, Batch: cfg.Batch}
	pc := &pipeline.Config{Name: "b2", Stages: []*pipeline.StageConfig{
		{Name: "source", Kind: "b2.source", Next: "s1"},
		{Name: "s1", Kind: "b2.step", Next: "s2", Settings: set},
		{Name: "s2", Kind: "b2.step", Next: "s3", Settings: set},
		{Name: "s3", Kind: "b2.last", Settings: set},
	}}
	p, err := pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := p.Start(ctx); err != nil {
		return 0, err
	}
	select {
	case <-src.emitted:
	case <-ctx.Done():
	}
	rep, err := p.Stop(ctx)
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if rep.Abandoned != 0 {
		return 0, fmt.Errorf("b2: %d events abandoned", rep.Abandoned)
	}
	if err := check(sum.Load(), cfg.Items); err != nil {
		return 0, err
	}
	return took, nil
}

// producer is the framework side's source: it emits n events numbered
// 0..n-1 as fast as the first stage takes them.
type producer struct {
	n       int
	rt      stage.SourceRuntime
	wg      sync.WaitGroup
	emitted chan struct{}
	stop    chan struct{}
	once    sync.Once
}

func (s *producer) Start(_ context.Context, rt stage.SourceRuntime) error {
	s.rt = rt
	s.emitted, s.stop = make(chan struct{}), make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.emitted)
		out := rt.NewEmitter()
		ctx := context.Background()
		var now time.Time
		for i := 0; i < s.n; i++ {
			if i&1023 == 0 {
				select {
				case <-s.stop:
					return
				default:
				}
			}
			// A source reads the clock once per read, not per record
			// (netio does so per read buffer).
			if i&63 == 0 {
				now = time.Now()
			}
			_ = out.Emit(ctx, rt.NewEventAt(nil, uint64(i), stage.Origin{}, now))
		}
		out.Flush(ctx)
	}()
	return nil
}

func (s *producer) StopInput(context.Context) error {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}

// Drain has nothing to wait for: the events have no Origin to notify, and
// every worker has returned when the pipeline calls it.
func (s *producer) Drain(context.Context) error { return nil }

func (s *producer) Close() error { return nil }

// item is the channel side's record: a payload and a number, as a Go
// programmer would pass them without the framework.
type item struct {
	payload []byte
	seq     uint64
}

// RunChannels is RunPipeline hand-written: a producer, three stages of
// cfg.Workers goroutines joined by buffered channels of cfg.Capacity,
// each stage closing the next channel once all of its goroutines are done.
func RunChannels(ctx context.Context, cfg Config) (time.Duration, error) {
	cfg.fill()
	var sum atomic.Uint64
	start := time.Now()
	in := make(chan *item, cfg.Capacity)
	src := in
	var all sync.WaitGroup
	for s := 0; s < 3; s++ {
		last := s == 2
		out := make(chan *item, cfg.Capacity)
		var wg sync.WaitGroup
		for w := 0; w < cfg.Workers; w++ {
			wg.Add(1)
			go func(in <-chan *item, out chan<- *item) {
				defer wg.Done()
				var s uint64
				for it := range in {
					s += it.seq + uint64(len(it.payload))
					if !last {
						out <- it
					}
				}
				if last {
					sum.Add(s)
				}
			}(src, out)
		}
		all.Add(1)
		go func() {
			defer all.Done()
			wg.Wait()
			close(out)
		}()
		src = out
	}
	stopped := false
	for i := 0; i < cfg.Items; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			stopped = true
			break
		}
		in <- &item{seq: uint64(i)}
	}
	close(in)
	all.Wait()
	took := time.Since(start)
	if stopped {
		return 0, ctx.Err()
	}
	if err := check(sum.Load(), cfg.Items); err != nil {
		return 0, err
	}
	return took, nil
}

var errLost = errors.New("b2: items lost or duplicated")

func check(sum uint64, n int) error {
	if want := uint64(n) * uint64(n-1) / 2; sum != want {
		return fmt.Errorf("%w: sum %d, want %d", errLost, sum, want)
	}
	return nil
}
