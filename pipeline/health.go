package pipeline

// This file holds the pipeline's readiness: running, with no stage down.

import (
	"fmt"
	"strings"
	"time"

	"github.com/stagedserver/seda/stats"
)

// notReady returns why the pipeline is not ready, or "" when it is: it is
// starting, draining or stopped, or a stage is down (its calls have
// failed for seconds: the database is unreachable), named with since when
// and its last error. /readyz answers 503 with it, so that a load
// balancer sends records elsewhere while they could only queue up.
func (p *Pipeline) notReady() string {
	if st := p.currentState(); st != stateRunning {
		return st.String()
	}
	var down []string
	for _, st := range p.Stats().Stages {
		if st.Health.State == stats.HealthDown {
			down = append(down, fmt.Sprintf("stage %s down since %s (%s): %s", st.Name,
				st.Health.Since.Format(time.TimeOnly), time.Since(st.Health.Since).Round(time.Second), st.Health.Error))
		}
	}
	return strings.Join(down, "\n")
}
