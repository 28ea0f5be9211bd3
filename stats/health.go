package stats

// This file holds a stage's health as /stats shows it.

import "time"

// The states of Health.State.
const (
	// HealthOK: the stage's calls succeed, or it makes none.
	HealthOK = "ok"
	// HealthDegraded: some calls fail, calls have just begun failing, the
	// failures stopped a moment ago, or a call has run for a long time.
	HealthDegraded = "degraded"
	// HealthDown: every call has failed for a while (the database is
	// unreachable and every batch is retried). /readyz answers 503.
	HealthDown = "down"
)

// Health says whether a stage's calls succeed (json "health"): the calls
// its handler makes to a database or a queue, as the handler reports
// each attempt (stage.ReportAttempt) and as Handle's own errors tell.
type Health struct {
	State string    `json:"state"` // ok, degraded or down
	Since time.Time `json:"since"` // when the stage entered the state
	// Error is why the stage is not ok: the last failure's text, or
	// what stalls it; empty when ok.
	Error string `json:"error,omitempty"`
	// Failures counts the failed calls (attempts) so far.
	Failures uint64 `json:"failures"`
}

// Worsen sets h to state, since when and why, if state is worse than h's
// (ok, then degraded, then down); a better one changes nothing. It is for
// a kind's Figures, which the runtime calls after it judged the health
// and which may know of trouble the calls do not show.
func (h *Health) Worsen(state string, since time.Time, why string) {
	if healthRank(state) > healthRank(h.State) {
		h.State, h.Since, h.Error = state, since, why
	}
}

// healthRank orders the states from best to worst; "" is ok.
func healthRank(state string) int {
	switch state {
	case HealthDown:
		return 2
	case HealthDegraded:
		return 1
	}
	return 0
}
