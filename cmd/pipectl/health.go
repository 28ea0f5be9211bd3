package main

// This file holds how stats and top show a stage's health: a cell per
// stage, and a line per stage that is not ok saying why.

import (
	"fmt"
	"time"

	"github.com/stagedserver/seda/stats"
)

// healthCell is a stage's health state: "ok", "degraded", "DOWN" (upper
// case: it is the news), or "-" from a server that does not say.
func healthCell(st stats.Stage) string {
	switch st.Health.State {
	case "":
		return "-"
	case stats.HealthDown:
		return "DOWN"
	}
	return st.Health.State
}

// healthLines say, for each stage that is not ok, since when and why:
// "store: DOWN for 15s: PostgreSQL write failed, retrying: ...". The
// time is counted to when the snapshot was taken, or, for a snapshot
// with no such time, given as it is (UTC).
func healthLines(s *snapshot) []string {
	var out []string
	for _, st := range s.Stages {
		h := st.Health
		if h.State == "" || h.State == stats.HealthOK {
			continue
		}
		when := "since " + h.Since.UTC().Format(time.RFC3339)
		if !s.at.IsZero() && !h.Since.IsZero() {
			// The server's clock and ours may differ a little: a
			// stage is never down for less than nothing.
			when = "for " + max(s.at.Sub(h.Since), 0).Round(time.Second).String()
		}
		out = append(out, fmt.Sprintf("%s: %s %s: %s", st.Name, healthCell(st), when, orDash(h.Error)))
	}
	return out
}
