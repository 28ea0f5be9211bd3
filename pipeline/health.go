package pipeline

// This file holds the pipeline's readiness: running, with no stage down.

import (
	"fmt"
	"strings"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stats"
)

// notReady returns why the pipeline is not ready, or "" when it is: it is
// starting, draining or stopped, or a stage is down (its calls have
// failed for seconds: the database is unreachable), named with since when
// and its last error. /readyz answers 503 with it, so that a load
// balancer sends records elsewhere while they could only queue up.
//
// A stage fed by a transport's consumer is the exception: while it is
// down its records wait in the stream, which is what such a queue is for,
// so the process can still take them (a split front, whose stand-in is
// all it runs of the stage, stays ready too). Where this process also
// publishes to that stream, its hidden stand-in counts instead: down, the
// records cannot reach the stream.
func (p *Pipeline) notReady() string {
	if st := p.currentState(); st != stateRunning {
		return st.String()
	}
	queued := make(map[string]bool, len(p.behind))
	var standIns []*engine.Stage
	for _, b := range p.behind {
		queued[p.stages[b.stage].Stage().Name()] = true
		if b.fed {
			standIns = append(standIns, p.stages[b.pub].Stage())
		}
	}
	var down []string
	add := func(what string, h stats.Health) {
		down = append(down, fmt.Sprintf("%s down since %s (%s): %s", what,
			h.Since.Format(time.TimeOnly), time.Since(h.Since).Round(time.Second), h.Error))
	}
	for _, st := range p.Stats().Stages {
		if st.Health.State == stats.HealthDown && !queued[st.Name] {
			add("stage "+st.Name, st.Health)
		}
	}
	for _, s := range standIns {
		if h := s.Stats().Health; h.State == stats.HealthDown {
			add("the queue of stage "+s.Name(), h)
		}
	}
	return strings.Join(down, "\n")
}
