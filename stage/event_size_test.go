package stage

// This file tests the Event's memory layout: its size class, a Value's
// size, its arrival time, and its bookkeeping kept first.

import (
	"testing"
	"time"
	"unsafe"
)

// Events are recycled, but a new one is still made whenever the pool has
// none at hand: keep it within the 112-byte size class.
func TestEventSize(t *testing.T) {
	if n := unsafe.Sizeof(Event{}); n > 112 {
		t.Fatalf("Event is %d bytes, want at most 112", n)
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

// A field is a name and a three-word Value: an event's few fields take
// few cache lines.
func TestValueSize(t *testing.T) {
	if n := unsafe.Sizeof(Value{}); n > 24 {
		t.Fatalf("Value is %d bytes, want at most 24", n)
	}
}

// internal/engine reaches an event's bookkeeping by converting the
// *Event to a *track.State: the field must stay first.
func TestEventStateFirst(t *testing.T) {
	if off := unsafe.Offsetof(Event{}.t); off != 0 {
		t.Fatalf("Event.t is at offset %d, want 0", off)
	}
}
