// This file tests the health of a stage shown with its queue's stand-in.
package pipeline

import (
	"testing"
	"time"

	"github.com/stagedserver/seda/stats"
)

// TestMergeHealth: a stage shown with its hidden stand-in reads the worse
// of the two healths; on a tie, ok since the later of the two and not ok
// since the earlier.
func TestMergeHealth(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	h := func(state string, since time.Time, why string, failures uint64) stats.Health {
		return stats.Health{State: state, Since: since, Error: why, Failures: failures}
	}
	for _, c := range []struct {
		name         string
		own, standIn stats.Health
		want         stats.Health
	}{
		{"stand-in worse", h("ok", t0, "", 1), h("down", t2, "nats", 2), h("down", t2, "nats", 3)},
		{"stage worse", h("degraded", t2, "slow", 0), h("ok", t1, "", 4), h("degraded", t2, "slow", 4)},
		{"both ok, the stand-in recovered later", h("ok", t0, "", 0), h("ok", t2, "", 5), h("ok", t2, "", 5)},
		{"both ok, the stage recovered later", h("ok", t2, "", 0), h("ok", t1, "", 0), h("ok", t2, "", 0)},
		{"both down, the stand-in first", h("down", t2, "db", 0), h("down", t1, "nats", 0), h("down", t1, "db", 0)},
		{"both down, the stage first", h("down", t1, "db", 0), h("down", t2, "nats", 0), h("down", t1, "db", 0)},
	} {
		if got := mergeHealth(c.own, c.standIn); got != c.want {
			t.Errorf("%s: mergeHealth(%+v, %+v) = %+v, want %+v", c.name, c.own, c.standIn, got, c.want)
		}
	}
}
