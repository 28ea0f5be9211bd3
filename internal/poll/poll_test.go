package poll

// This file tests Until: it returns once the condition holds, and fails
// the test naming what it waited for.

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 1000 {
			n.Add(1)
		}
	}()
	Until(t, "the counter to reach 1000", func() bool { return n.Load() == 1000 })
}

// recorder is a testing.TB that records Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestGivesUp(t *testing.T) {
	r := &recorder{TB: t}
	within(r, "nothing", 50*time.Millisecond, func() bool { return false })
	if !strings.Contains(r.failed, "waiting for nothing") {
		t.Fatalf("failure %q", r.failed)
	}
}
