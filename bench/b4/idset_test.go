package b4

// This file tests idSet.

import (
	"sync"
	"testing"
)

func TestIDSet(t *testing.T) {
	const base, n, conns = 100, 1000, 8
	acked, stored := newIDSet(base, n), newIDSet(base, n)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			for id := int64(base + c); id < base+n; id += conns {
				acked.Add(id)
				if id != base+517 {
					stored.Add(id)
				}
			}
		})
	}
	wg.Wait()
	acked.Add(base - 1)
	acked.Add(base + n + 63) // past the bitmap's last word
	if got := acked.Len(); got != n {
		t.Errorf("Len = %d, want %d", got, n)
	}
	if got := acked.outside.Load(); got != 2 {
		t.Errorf("outside = %d, want 2", got)
	}
	if !acked.Has(base) || !acked.Has(base+n-1) || acked.Has(base-1) || stored.Has(base+517) {
		t.Error("Has is wrong")
	}
	if missing, first := acked.Missing(stored); missing != 1 || first != base+517 {
		t.Errorf("Missing = %d, first %d; want 1, %d", missing, first, base+517)
	}
	if missing, first := stored.Missing(acked); missing != 0 || first != -1 {
		t.Errorf("reverse Missing = %d, first %d; want 0, -1", missing, first)
	}
}
