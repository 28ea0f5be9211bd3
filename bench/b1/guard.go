package b1

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/port"
)

// IdleCPU parks workers workers in Get on an empty port and returns the CPU
// the whole process used meanwhile, over d, as a fraction of one core
// (getrusage user plus system time). B1's guard rail wants it under 0.01
// for 64 workers.
func IdleCPU(workers int, d time.Duration) (float64, error) {
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
	return (after - before).Seconds() / time.Since(start).Seconds(), nil
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
