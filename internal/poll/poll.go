package poll

// This file holds Until: poll a condition, eagerly then gently, and fail
// the test after Limit.

import (
	"runtime"
	"testing"
	"time"
)

// Limit bounds every wait: far above what any condition takes on a loaded
// machine, well below the go test timeout.
const Limit = 30 * time.Second

// Until polls cond until it returns true, and fails t (naming what it was
// waiting for) if Limit passes first. It polls eagerly at first, yielding
// the processor between tries, so that conditions met at once (a
// goroutine parking) are seen at once, then every millisecond or so, and
// every 20 ms after the first second, so that costly conditions (a query,
// an HTTP request) do not load the machine.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	within(t, what, Limit, cond)
}

func within(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		if cond() {
			return
		}
		waited := time.Since(start)
		switch {
		case waited > limit:
			t.Fatalf("gave up after %s waiting for %s", limit, what)
			return
		case i < 100:
			runtime.Gosched()
		case waited < time.Second:
			time.Sleep(500 * time.Microsecond)
		default:
			time.Sleep(20 * time.Millisecond)
		}
	}
}
