package b1

// This file runs B1: its cases, and each run through the port and through
// a buffered channel, alternating, with its Markdown section.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/port"
)

// Payload is the 32-byte work item of B1.
type Payload struct{ A, B, C, D uint64 }

// Capacity is the queue capacity of both the port and the channel: the
// port's default when B1 was written (it is 8192 now), kept so that B1's
// figures compare across runs.
const Capacity = 1024

// Case is one row of B1.
type Case struct {
	Name        string
	Producers   int
	Workers     int
	Concurrency int     // the port's run slots; the channel has no such limit
	Batch       int     // GetBatch size on the port; 0 means Get
	Target      float64 // port items/s over channel items/s, at least
}

// Cases returns the rows of B1 in the order of docs/BENCHMARKS.md.
func Cases() []Case {
	return []Case{
		{Name: "1P1W", Producers: 1, Workers: 1, Concurrency: 1, Target: 1.0},
		{Name: "2P2W", Producers: 2, Workers: 2, Concurrency: 2, Target: 1.5},
		{Name: "1P64W-C2", Producers: 1, Workers: 64, Concurrency: 2, Target: 2.0},
		{Name: "2P2W-Batch64", Producers: 2, Workers: 2, Concurrency: 2, Batch: 64, Target: 5.0},
	}
}

// CaseByName returns the case called name.
func CaseByName(name string) (Case, bool) {
	for _, c := range Cases() {
		if c.Name == name {
			return c, true
		}
	}
	return Case{}, false
}

// RunPort moves items items through a port as c says and returns how long
// it took from the first Post to the last item's work.
func RunPort(c Case, items int) time.Duration {
	_, d := runPort(c, load{items: items})
	return d
}

// RunPortFor is RunPort for about round: the producers send until round
// has passed since the first Post, and it returns how many items moved and
// how long that took, to the last item's work.
func RunPortFor(c Case, round time.Duration) (int, time.Duration) {
	return runPort(c, load{round: round})
}

func runPort(c Case, l load) (int, time.Duration) {
	p := port.New[Payload](port.Options{Concurrency: c.Concurrency, Capacity: Capacity})
	var total atomic.Uint64
	var ready, done sync.WaitGroup
	for i := 0; i < c.Workers; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			w := p.Join()
			defer w.Leave()
			ready.Done()
			var sum uint64
			if c.Batch > 0 {
				buf := make([]port.Packet[Payload], c.Batch)
				for {
					n, err := w.GetBatch(context.Background(), buf)
					if err != nil {
						break
					}
					for _, pk := range buf[:n] {
						sum += pk.Value.A
					}
				}
			} else {
				for {
					pk, err := w.Get(context.Background())
					if err != nil {
						break
					}
					sum += pk.Value.A
				}
			}
			total.Add(sum)
		}()
	}
	ready.Wait()
	start := time.Now()
	items := produce(c.Producers, l, start, func(v Payload) {
		_ = p.Post(context.Background(), port.Packet[Payload]{Value: v})
	})
	p.Close()
	done.Wait()
	d := time.Since(start)
	check(total.Load(), items)
	return items, d
}

// RunChan is RunPort with a buffered channel: every worker receives.
func RunChan(c Case, items int) time.Duration {
	_, d := runChan(c, load{items: items})
	return d
}

// RunChanFor is RunPortFor with a buffered channel.
func RunChanFor(c Case, round time.Duration) (int, time.Duration) {
	return runChan(c, load{round: round})
}

func runChan(c Case, l load) (int, time.Duration) {
	ch := make(chan Payload, Capacity)
	var total atomic.Uint64
	var ready, done sync.WaitGroup
	for i := 0; i < c.Workers; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			var sum uint64
			for v := range ch {
				sum += v.A
			}
			total.Add(sum)
		}()
	}
	ready.Wait()
	start := time.Now()
	items := produce(c.Producers, l, start, func(v Payload) { ch <- v })
	close(ch)
	done.Wait()
	d := time.Since(start)
	check(total.Load(), items)
	return items, d
}

// load is how much a run moves: items items, or, when round is set, what
// the producers send until round has passed.
type load struct {
	items int
	round time.Duration
}

// roundChunk is how many items a producer sends between two looks at the
// clock when a run lasts a round: a clock read per 256 items costs both
// sides alike and far less than the items.
const roundChunk = 256

// produce runs producers goroutines that send what l says, each item with
// A = 1, waits for them and returns how many items they sent. Under a
// round each producer sends whole chunks until round has passed since
// start.
func produce(producers int, l load, start time.Time, send func(Payload)) int {
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i := 0; i < producers; i++ {
		n := l.items / producers
		if i < l.items%producers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.round <= 0 {
				for j := 0; j < n; j++ {
					send(Payload{A: 1, B: uint64(j)})
				}
				sent.Add(int64(n))
				return
			}
			j := 0
			for time.Since(start) < l.round {
				for range roundChunk {
					send(Payload{A: 1, B: uint64(j)})
					j++
				}
			}
			sent.Add(int64(j))
		}()
	}
	wg.Wait()
	return int(sent.Load())
}

// check panics if an item was lost or doubled: a broken port must not
// yield a figure.
func check(sum uint64, items int) {
	if sum != uint64(items) {
		panic(fmt.Sprintf("b1: %d items arrived, %d sent", sum, items))
	}
}

// Config says how much of B1 to run. The zero Config runs every case 11
// times, each run lasting 120 ms per side, as the held-out check does,
// taken in 12 alternating slices per side (see Slices).
type Config struct {
	Runs  int      // alternating port/channel runs per case; 0 means 11
	Cases []string // case names; nil means all
	// Round is how long each run lasts: the producers send until then. 0
	// means DefaultRound, unless Items is set.
	Round time.Duration
	// Items, when set (and Round is not), makes each run move that many
	// items instead of lasting a round.
	Items int
	// Slices, when above 1, takes each side's round as that many slices of
	// Round/Slices, the two sides' slices alternating (port, channel,
	// channel, port, ...), and sums them: both sides then share whatever
	// the machine's other work does during the run, instead of one side
	// drawing a window that another process's burst fills. 0 means
	// DefaultSlices; 1 is one window of Round per side, as the held-out
	// check runs it.
	Slices int
}

// The zero Config's runs: the held-out check's 11 rounds of 120 ms.
const (
	DefaultRuns   = 11
	DefaultRound  = 120 * time.Millisecond
	DefaultSlices = 12
)

// Result holds one case's figures, one per run, in run order.
type Result struct {
	Case            string
	Target          float64
	PortItemsPerSec []float64
	ChanItemsPerSec []float64
	// The process's CPU time (user and system, every thread) per item
	// moved, in nanoseconds; 0 where the system has none to read. Unlike
	// items/s it does not move with the CPU share the machine's other
	// work leaves the run.
	PortCPUPerItem []float64
	ChanCPUPerItem []float64
}

// Ratios returns port over channel items/s for each run.
func (r Result) Ratios() []float64 {
	out := make([]float64, len(r.PortItemsPerSec))
	for i := range out {
		out[i] = r.PortItemsPerSec[i] / r.ChanItemsPerSec[i]
	}
	return out
}

// Met reports whether every run's ratio reaches the target, the lowest
// included: the held-out check wants the target in every run, not only at
// the median.
func (r Result) Met() bool { return report.Summarize(r.Ratios()).Min >= r.Target }

// Run runs the configured cases, each Runs times, alternating port and
// channel (the side that goes first alternates too). It stops between runs
// when ctx ends and returns what it has with ctx.Err(); it fails at once
// on an unknown case name.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = DefaultRuns
	}
	if cfg.Round <= 0 && cfg.Items <= 0 {
		cfg.Round = DefaultRound
	}
	cases := Cases()
	if cfg.Cases != nil {
		cases = cases[:0:0]
		for _, name := range cfg.Cases {
			c, ok := CaseByName(name)
			if !ok {
				return nil, fmt.Errorf("b1: unknown case %q", name)
			}
			cases = append(cases, c)
		}
	}
	results := make([]Result, len(cases))
	for i, c := range cases {
		results[i] = Result{Case: c.Name, Target: c.Target}
	}
	l := load{round: cfg.Round}
	if l.round <= 0 {
		l.items = cfg.Items
	}
	if cfg.Slices <= 0 {
		cfg.Slices = DefaultSlices
	}
	slices := 1
	if l.round > 0 && cfg.Slices > 1 {
		slices = cfg.Slices
		l.round /= time.Duration(slices)
	}
	// side sums one side's slices of a run.
	type side struct {
		items    int
		d, cpu   time.Duration
		run      func(Case, load) (int, time.Duration)
		perSec   *[]float64
		perItemC *[]float64
	}
	measureOnce := func(s *side, c Case) {
		before := measure.CPU()
		n, d := s.run(c, l)
		s.cpu += measure.CPU() - before
		s.items += n
		s.d += d
	}
	for run := 0; run < cfg.Runs; run++ {
		for i, c := range cases {
			if err := ctx.Err(); err != nil {
				return results, err
			}
			r := &results[i]
			p := side{run: runPort, perSec: &r.PortItemsPerSec, perItemC: &r.PortCPUPerItem}
			ch := side{run: runChan, perSec: &r.ChanItemsPerSec, perItemC: &r.ChanCPUPerItem}
			for k := 0; k < slices; k++ {
				// The side that goes first alternates from run to run
				// and, within a run, from slice pair to slice pair.
				if (run+k)%2 == 0 {
					measureOnce(&p, c)
					measureOnce(&ch, c)
				} else {
					measureOnce(&ch, c)
					measureOnce(&p, c)
				}
			}
			for _, s := range []*side{&p, &ch} {
				*s.perSec = append(*s.perSec, float64(s.items)/s.d.Seconds())
				*s.perItemC = append(*s.perItemC, float64(s.cpu.Nanoseconds())/float64(s.items))
			}
		}
	}
	return results, nil
}

// Markdown renders results as the body of B1's section of
// bench/RESULTS.md.
func Markdown(rs []Result) string {
	var b strings.Builder
	b.WriteString("| case | port items/s (median) | channel items/s (median) | ratio min / median / max | target | met (min) | CPU per item, port / channel (median) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | ≥ %.1f | %s | %.1f / %.1f ns |\n", r.Case,
			report.Rate(report.Median(r.PortItemsPerSec)), report.Rate(report.Median(r.ChanItemsPerSec)),
			report.Summarize(r.Ratios()).Ratios(), r.Target, report.Met(r.Met()),
			report.Median(r.PortCPUPerItem), report.Median(r.ChanCPUPerItem))
	}
	if len(rs) > 0 {
		fmt.Fprintf(&b, "\n%d runs per case, port and channel alternating; met means every run's ratio reaches the target. CPU per item is the whole process's CPU time over the items moved (both cores; it does not move with the CPU share other work leaves). Ratio of each run, in run order:\n\n", len(rs[0].Ratios()))
		for _, r := range rs {
			fmt.Fprintf(&b, "- %s:", r.Case)
			for _, x := range r.Ratios() {
				fmt.Fprintf(&b, " %.2f", x)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
