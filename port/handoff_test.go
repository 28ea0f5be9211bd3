package port

// This file tests that no hand-off between a poster and a worker is lost
// under load, and that a queue holds exactly its capacity.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHandOffsNeverLost makes every hand-off a park and a wake, where a
// Post and a parking worker could miss each other: producers post one
// packet each and wait for it to be worked on before posting the next,
// while the workers go in and out of Blocking and the limit moves. A
// hand-off lost would hang the test (it waits on each packet's delivery,
// never on a clock).
func TestHandOffsNeverLost(t *testing.T) {
	const (
		producers = 2
		workers   = 5
		each      = 3000
	)
	for _, capacity := range []int{1, 2, 64} {
		p := New[int](Options{Concurrency: 2, Capacity: capacity})
		acks := make([]chan struct{}, producers)
		for i := range acks {
			acks[i] = make(chan struct{}, 1)
		}
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := p.Join()
				defer w.Leave()
				buf := make([]Packet[int], 1+i%2)
				for k := 0; ; k++ {
					var n int
					var err error
					if i%2 == 0 {
						var pk Packet[int]
						pk, err = w.Get(bg)
						buf[0], n = pk, 1
					} else {
						n, err = w.GetBatch(bg, buf)
					}
					if err != nil {
						return
					}
					if k%7 == 0 {
						w.Blocking(runtime.Gosched)
					}
					for _, pk := range buf[:n] {
						acks[pk.Key] <- struct{}{}
					}
				}
			}()
		}
		var stop atomic.Bool
		var side sync.WaitGroup
		side.Add(1)
		go func() { // move the limit while packets flow
			defer side.Done()
			for k := 0; !stop.Load(); k++ {
				p.SetConcurrency(1 + k%3)
				runtime.Gosched()
			}
		}()
		var pwg sync.WaitGroup
		for i := 0; i < producers; i++ {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				for j := 0; j < each; j++ {
					var err error
					if j%5 == 0 {
						// The other producer's packet may fill a small
						// queue: try again.
						for err = p.TryPost(Packet[int]{Key: uint64(i)}); err == ErrFull; err = p.TryPost(Packet[int]{Key: uint64(i)}) {
							runtime.Gosched()
						}
					} else {
						err = p.Post(bg, Packet[int]{Key: uint64(i)})
					}
					if err != nil {
						t.Errorf("post: %v", err)
						return
					}
					<-acks[i]
				}
			}()
		}
		pwg.Wait()
		stop.Store(true)
		side.Wait()
		p.Close()
		wg.Wait()
		if s := p.Stats(); s.Posted != producers*each || s.Delivered != producers*each || s.Depth != 0 {
			t.Fatalf("capacity %d: final %+v", capacity, s)
		}
	}
}

// TestCapacities checks that the queue holds capacity packets, whatever
// the capacity, and refuses one more, then delivers them in order.
func TestCapacities(t *testing.T) {
	for _, c := range []int{1, 2, 3, 4, 5, 7, 8, 1000, 1024} {
		p := New[int](Options{Capacity: c, Overflow: Reject})
		for i := 0; i < c; i++ {
			if err := p.TryPost(Packet[int]{Value: i}); err != nil {
				t.Fatalf("capacity %d: post %d: %v", c, i, err)
			}
		}
		if err := p.TryPost(Packet[int]{}); err != ErrFull {
			t.Fatalf("capacity %d: post past capacity: %v", c, err)
		}
		w := p.Join()
		buf := make([]Packet[int], c+1)
		n, err := w.GetBatch(bg, buf)
		if err != nil || n != c {
			t.Fatalf("capacity %d: GetBatch = %d, %v", c, n, err)
		}
		for i, pk := range buf[:n] {
			if pk.Value != i {
				t.Fatalf("capacity %d: packet %d is %d", c, i, pk.Value)
			}
		}
		w.Leave()
		p.Close()
	}
}
