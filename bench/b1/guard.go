package b1

// This file measures B1's guard rails: allocations per hop, idle CPU, and
// hand-off latencies.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/bench/report"
	"github.com/stagedserver/seda/port"
)

// B1's guard rails (docs/BENCHMARKS.md).
const (
	IdleWorkers = 64   // workers parked on the idle port
	MaxIdleCPU  = 0.01 // their CPU, as a fraction of one core, below this
	MaxP99Ratio = 1.2  // port p99 hand-off latency over the channel's, at most
)

// Guards are B1's guard rails as measured: each figure once per try.
type Guards struct {
	AllocsPerHop float64   // allocations per Post+Get in steady state; want 0
	IdleCPU      []float64 // fractions of a core (IdleWorkers idle workers)
	Port, Chan   []Latencies
}

// P99Ratios returns the port's p99 over the channel's, per try.
func (g Guards) P99Ratios() []float64 {
	out := make([]float64, len(g.Port))
	for i := range out {
		out[i] = float64(g.Port[i].P99) / float64(g.Chan[i].P99)
	}
	return out
}

// MeasureGuards measures the guard rails tries times each: the idle CPU
// over d, the hand-off latencies with n items. It stops between tries when
// ctx ends.
func MeasureGuards(ctx context.Context, tries, n int, d time.Duration) (Guards, error) {
	g := Guards{AllocsPerHop: AllocsPerHop(10_000)}
	for range tries {
		if err := ctx.Err(); err != nil {
			return g, err
		}
		g.IdleCPU = append(g.IdleCPU, IdleCPU(IdleWorkers, d))
		pl, cl, err := Latency(n, 0)
		if err != nil {
			return g, err
		}
		g.Port, g.Chan = append(g.Port, pl), append(g.Chan, cl)
	}
	return g, nil
}

// Markdown renders g as the guard-rail table of B1's section of
// bench/RESULTS.md.
func (g Guards) Markdown() string {
	var b strings.Builder
	b.WriteString("| guard rail | measured (min / median / max of tries) | target | met (median) |\n| --- | ---: | ---: | --- |\n")
	fmt.Fprintf(&b, "| allocations per Post+Get | %.3f | 0 | %s |\n", g.AllocsPerHop, report.Met(g.AllocsPerHop < 0.001))
	idle := report.Summarize(g.IdleCPU)
	fmt.Fprintf(&b, "| idle port, %d workers parked: CPU, %% of a core | %.3f / %.3f / %.3f | < %.0f | %s |\n",
		IdleWorkers, 100*idle.Min, 100*idle.Median, 100*idle.Max, 100*MaxIdleCPU, report.Met(idle.Median < MaxIdleCPU))
	r := report.Summarize(g.P99Ratios())
	fmt.Fprintf(&b, "| p99 hand-off latency at half load, port / channel | %s | ≤ %.1f | %s |\n",
		r.Ratios(), MaxP99Ratio, report.Met(r.Median <= MaxP99Ratio))
	return b.String()
}

// AllocsPerHop returns the allocations per Post and Get of one item on
// one goroutine, over n of them, after a warm-up.
func AllocsPerHop(n int) float64 {
	p := port.New[Payload](port.Options{Concurrency: 1})
	defer p.Close()
	w := p.Join()
	defer w.Leave()
	ctx := context.Background()
	hop := func() {
		_ = p.Post(ctx, port.Packet[Payload]{Value: Payload{A: 1}})
		_, _ = w.Get(ctx)
	}
	for range 100 {
		hop()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		hop()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n)
}

// IdleCPU parks workers workers in Get on an empty port and returns the CPU
// the whole process used meanwhile, over d, as a fraction of one core
// (user plus system time; 0 where the system has none to read). B1's
// guard rail wants it under MaxIdleCPU for IdleWorkers workers.
func IdleCPU(workers int, d time.Duration) float64 {
	p := port.New[Payload](port.Options{Concurrency: 2})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := p.Join()
			defer w.Leave()
			for {
				if _, err := w.Get(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer p.Close()
	for p.Stats().Waiting < workers {
		time.Sleep(time.Millisecond)
	}
	runtime.GC() // so that a collection started by the setup does not count
	before := measure.CPU()
	start := time.Now()
	time.Sleep(d)
	after := measure.CPU()
	return (after - before).Seconds() / time.Since(start).Seconds()
}

// Latencies are hand-off latencies, from just before Post (or send) to just
// after Get (or receive) returns, at the 50th and 99th percentiles.
type Latencies struct{ P50, P99 time.Duration }

// Latency measures hand-off latency of one producer and one worker at rate
// items per second, through a port and through a channel, with n items
// each. A rate of 0 means half the channel's unpaced throughput with the
// same timestamping, measured first: B1's "half load".
func Latency(n int, rate float64) (portLat, chanLat Latencies, err error) {
	if n <= 0 {
		return portLat, chanLat, fmt.Errorf("b1: Latency of %d items", n)
	}
	if rate <= 0 {
		d := latencyChan(n, 0, make([]time.Duration, n))
		rate = float64(n) / d.Seconds() / 2
	}
	lat := make([]time.Duration, n)
	latencyPort(n, rate, lat)
	portLat = percentiles(lat)
	latencyChan(n, rate, lat)
	chanLat = percentiles(lat)
	return portLat, chanLat, nil
}

func percentiles(lat []time.Duration) Latencies {
	slices.Sort(lat)
	return Latencies{P50: lat[len(lat)/2], P99: lat[len(lat)*99/100]}
}

// pace returns a func that sends n items at rate per second (unpaced when
// rate is 0), each stamped with its time since base in B.
func pace(n int, rate float64, base time.Time, send func(Payload)) func() {
	return func() {
		start := time.Since(base)
		for i := range n {
			if rate > 0 {
				due := start + time.Duration(float64(i)/rate*1e9)
				for time.Since(base) < due {
				}
			}
			send(Payload{A: 1, B: uint64(time.Since(base))})
		}
	}
}

func latencyPort(n int, rate float64, lat []time.Duration) time.Duration {
	p := port.New[Payload](port.Options{Concurrency: 1, Capacity: Capacity})
	base := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := p.Join()
		defer w.Leave()
		for i := 0; ; i++ {
			pk, err := w.Get(context.Background())
			if err != nil {
				return
			}
			lat[i] = time.Since(base) - time.Duration(pk.Value.B)
		}
	}()
	pace(n, rate, base, func(v Payload) { _ = p.Post(context.Background(), port.Packet[Payload]{Value: v}) })()
	p.Close()
	<-done
	return time.Since(base)
}

func latencyChan(n int, rate float64, lat []time.Duration) time.Duration {
	ch := make(chan Payload, Capacity)
	base := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		i := 0
		for v := range ch {
			lat[i] = time.Since(base) - time.Duration(v.B)
			i++
		}
	}()
	pace(n, rate, base, func(v Payload) { ch <- v })()
	close(ch)
	<-done
	return time.Since(base)
}
