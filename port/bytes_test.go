package port

// This file tests the bound in bytes (Options.MaxBytes): packets' N
// added up.

import (
	"context"
	"errors"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
)

// A queue with MaxBytes is full once its packets' N add up to it, under
// either overflow; a packet larger than the bound enters an empty queue.
func TestMaxBytesReject(t *testing.T) {
	p := New[int](Options{Capacity: 100, MaxBytes: 100, Overflow: Reject})
	for i, n := range []int{60, 60} { // room while under 100: the second passes it
		if err := p.Post(bg, Packet[int]{N: n, Value: i}); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if err := p.Post(bg, Packet[int]{N: 1}); !errors.Is(err, ErrFull) {
		t.Fatalf("post past the bytes: %v, want ErrFull", err)
	}
	if !p.Full() || !p.FullAt(0) {
		t.Fatal("Full says there is room past the bytes")
	}
	if n, err := p.TryPostBatch([]Packet[int]{{N: 1}, {N: 1}}); n != 0 || !errors.Is(err, ErrFull) {
		t.Fatalf("TryPostBatch past the bytes: %d, %v", n, err)
	}
	if st := p.Stats(); st.Bytes != 120 || st.MaxBytes != 100 || st.Depth != 2 || st.Rejected != 3 {
		t.Fatalf("stats %+v, want 120 bytes of 100 in 2 packets, 3 rejected", st)
	}
	w := p.Join()
	defer w.Leave()
	if pk, err := w.Get(bg); err != nil || pk.N != 60 {
		t.Fatalf("get: %+v, %v", pk, err)
	}
	if st := p.Stats(); st.Bytes != 60 {
		t.Fatalf("bytes after a get: %d, want 60", st.Bytes)
	}
	// Room again: a batch is queued while under the bound, and the rest
	// refused.
	n, err := p.PostBatch(bg, []Packet[int]{{N: 30}, {N: 30}, {N: 30}})
	if n != 2 || !errors.Is(err, ErrFull) {
		t.Fatalf("PostBatch: %d, %v; want 2, ErrFull", n, err)
	}
	buf := make([]Packet[int], 10)
	if n, err := w.GetBatch(bg, buf); err != nil || n != 3 {
		t.Fatalf("GetBatch: %d, %v", n, err)
	}
	if st := p.Stats(); st.Bytes != 0 || st.Depth != 0 {
		t.Fatalf("stats after draining: %+v", st)
	}
	if err := p.Post(bg, Packet[int]{N: 1000}); err != nil {
		t.Fatalf("a packet over the bound into an empty queue: %v", err)
	}
}

// Under Overflow Block a Post waits while the bytes are at the bound, and
// a Get that takes bytes off lets it in, in order.
func TestMaxBytesBlock(t *testing.T) {
	p := New[int](Options{Capacity: 100, MaxBytes: 100})
	if err := p.Post(bg, Packet[int]{N: 100, Value: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- p.Post(bg, Packet[int]{N: 10, Value: 2}) }()
	poll.Until(t, "poster waiting", func() bool { return p.postersWaiting() == 1 })
	go func() { done <- p.Post(bg, Packet[int]{N: 10, Value: 3}) }()
	poll.Until(t, "2 posters waiting", func() bool { return p.postersWaiting() == 2 })
	w := p.Join()
	defer w.Leave()
	for want := 1; want <= 3; want++ {
		pk, err := w.Get(bg)
		if err != nil || pk.Value != want {
			t.Fatalf("get: %+v, %v; want value %d", pk, err, want)
		}
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("waiting post: %v", err)
		}
	}
	if st := p.Stats(); st.Bytes != 0 {
		t.Fatalf("bytes %d after draining", st.Bytes)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := p.Post(ctx, Packet[int]{N: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled post: %v", err)
	}
}

// Without MaxBytes the bytes are still added up (Stats), and never bound.
func TestBytesCountedWithoutBound(t *testing.T) {
	p := New[int](Options{Capacity: 4})
	if _, err := p.PostBatch(bg, []Packet[int]{{N: 1 << 40}, {N: 1 << 40}}); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Bytes != 2<<40 || st.MaxBytes != 0 || p.Full() {
		t.Fatalf("stats %+v, full %v", st, p.Full())
	}
}
