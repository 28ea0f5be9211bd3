package stage

import (
	"testing"
	"time"
	"unsafe"
)

// An event is allocated per record: keep it within the 96-byte size class
// (see the arrived field).
func TestEventSize(t *testing.T) {
	if n := unsafe.Sizeof(Event{}); n > 96 {
		t.Fatalf("Event is %d bytes, want at most 96", n)
	}
}

func TestEventArrived(t *testing.T) {
	var ev Event
	if !ev.Arrived().IsZero() {
		t.Fatalf("unset Arrived = %v, want zero", ev.Arrived())
	}
	now := time.Now()
	ev.SetArrived(now)
	if got := ev.Arrived(); !got.Equal(now) || got.Sub(now) != 0 {
		t.Fatalf("Arrived = %v, want %v", got, now)
	}
	if d := time.Since(ev.Arrived()); d < 0 || d > time.Hour {
		t.Fatalf("time.Since(Arrived) = %v", d)
	}
	wall := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC) // no monotonic reading
	ev.SetArrived(wall)
	if got := ev.Arrived(); !got.Equal(wall) {
		t.Fatalf("Arrived = %v, want %v", got, wall)
	}
	ev.SetArrived(time.Time{})
	if !ev.Arrived().IsZero() {
		t.Fatalf("Arrived after unset = %v, want zero", ev.Arrived())
	}
}
