package port

import (
	"context"
	"sync"
	"testing"
)

func TestSmoke(t *testing.T) {
	p := New[int](Options{Capacity: 4, Concurrency: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := p.Join()
			defer w.Leave()
			for {
				pk, err := w.Get(context.Background())
				if err != nil {
					return
				}
				mu.Lock()
				sum += pk.Value
				mu.Unlock()
			}
		}()
	}
	for i := 1; i <= 1000; i++ {
		if err := p.Post(context.Background(), Packet[int]{Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	wg.Wait()
	if sum != 500500 {
		t.Fatal(sum)
	}
}
