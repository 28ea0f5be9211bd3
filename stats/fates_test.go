package stats

// This file tests Fates: its line in the shutdown report, and its sums.

import "testing"

func TestFatesLine(t *testing.T) {
	f := Fates{Stored: 1200, Lost: 3, Resend: 17}
	if got, want := f.String(), "1200 stored, 0 redelivered later (NATS), 3 lost (ack: none), 17 left for clients to resend"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	f.DeadLettered = 2
	if got, want := f.String(), "1200 stored, 0 redelivered later (NATS), 3 lost (ack: none), 17 left for clients to resend, 2 dead-lettered (NATS)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if f.Total() != 1222 {
		t.Errorf("Total() = %d, want 1222", f.Total())
	}
	later := f.Add(Fates{Stored: 5, Redelivered: 7})
	if d := later.Sub(f); d != (Fates{Stored: 5, Redelivered: 7}) {
		t.Errorf("Sub = %+v", d)
	}
	if d := f.Sub(later); d != (Fates{}) {
		t.Errorf("Sub of a later reading = %+v, want zeros", d)
	}
}
