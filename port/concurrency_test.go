package port

// This file tests changing the run-slot limit while workers run, and
// TryPostBatch.

import (
	"runtime"
	"testing"
)

// Raising the limit releases parked workers to queued packets at once.
func TestSetConcurrencyRaise(t *testing.T) {
	p := New[int](Options{Concurrency: 1, Capacity: 16})
	out := make(chan got, 16)
	var hs []*holder
	for i := 0; i < 3; i++ {
		hs = append(hs, startHolder(p, i, out))
	}
	waitStats(t, p, "3 waiting", func(s Stats) bool { return s.Waiting == 3 })
	for i := 0; i < 3; i++ {
		mustPost(t, p, i)
	}
	recv(t, out)
	waitStats(t, p, "1 running, 2 queued", func(s Stats) bool { return s.Running == 1 && s.Depth == 2 })
	p.SetConcurrency(3)
	recv(t, out)
	recv(t, out)
	if s := p.Stats(); s.Running != 3 || s.Depth != 0 || s.Concurrency != 3 {
		t.Fatalf("after raising to 3: %+v", s)
	}
	p.Close()
	stopAll(hs)
}

// Lowering the limit interrupts nobody: the workers running keep their
// slots, and as they come back to Get none is released until fewer than
// the new limit run, as a Windows port over its thread count does.
func TestSetConcurrencyLower(t *testing.T) {
	p := New[int](Options{Concurrency: 3, Capacity: 16})
	out := make(chan got, 16)
	var hs []*holder
	for i := 0; i < 3; i++ {
		hs = append(hs, startHolder(p, i, out))
	}
	waitStats(t, p, "3 waiting", func(s Stats) bool { return s.Waiting == 3 })
	for i := 0; i < 3; i++ {
		mustPost(t, p, i)
	}
	var running []int
	for i := 0; i < 3; i++ {
		running = append(running, recv(t, out).worker)
	}
	p.SetConcurrency(1)
	for i := 3; i < 6; i++ {
		mustPost(t, p, i)
	}
	if s := p.Stats(); s.Running != 3 || s.Depth != 3 || s.Concurrency != 1 {
		t.Fatalf("right after lowering to 1: %+v, want the 3 workers still running and 3 queued", s)
	}
	// Two come back: each gives its slot up and parks, nobody is released
	// (2 and then 1 still run, not below 1).
	hs[running[0]].next <- struct{}{}
	waitStats(t, p, "first back parked", func(s Stats) bool { return s.Waiting == 1 })
	hs[running[1]].next <- struct{}{}
	waitStats(t, p, "second back parked", func(s Stats) bool { return s.Waiting == 2 })
	if s := p.Stats(); s.Running != 1 || s.Depth != 3 || s.Delivered != 3 {
		t.Fatalf("two back: %+v, want 1 running, nothing more delivered", s)
	}
	if len(out) != 0 {
		t.Fatalf("a worker was released over the new limit")
	}
	// The last comes back: now one packet goes out, to one worker.
	hs[running[2]].next <- struct{}{}
	if g := recv(t, out); g.err != nil {
		t.Fatal(g.err)
	}
	waitStats(t, p, "one running", func(s Stats) bool { return s.Running == 1 && s.Depth == 2 && s.Waiting == 2 })
	p.Close()
	stopAll(hs)
}

func TestSetConcurrencyDefault(t *testing.T) {
	p := New[int](Options{Concurrency: 1})
	p.SetConcurrency(0)
	if got, want := p.Concurrency(), runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("SetConcurrency(0): Concurrency = %d, want GOMAXPROCS %d", got, want)
	}
}

// TryPostBatch queues what fits and refuses the rest, even under Block.
func TestTryPostBatch(t *testing.T) {
	p := New[int](Options{Capacity: 3, Overflow: Block})
	n, err := p.TryPostBatch([]Packet[int]{{Value: 1}, {Value: 2}, {Value: 3}, {Value: 4}, {Value: 5}})
	if n != 3 || err != ErrFull {
		t.Fatalf("TryPostBatch = %d, %v; want 3, ErrFull", n, err)
	}
	if s := p.Stats(); s.Depth != 3 || s.Rejected != 2 {
		t.Fatalf("stats %+v", s)
	}
	p.Close()
	if _, err := p.TryPostBatch([]Packet[int]{{Value: 6}}); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
}
