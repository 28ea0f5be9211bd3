package main

// This file tests the lines stats and top print under the table, one for
// each stage that is not ok.

import (
	"reflect"
	"testing"
	"time"

	"github.com/stagedserver/seda/stats"
)

// TestHealthLines checks the lines under the table: one per stage that is
// not ok, counted to the snapshot's time (never below zero when the
// server's clock is ahead), or dated when the snapshot has no time.
func TestHealthLines(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := &snapshot{Stages: []stats.Stage{
		{Name: "accept", Health: stats.Health{State: stats.HealthOK, Since: t0}},
		{Name: "parse"},
		{Name: "store", Health: stats.Health{State: stats.HealthDown, Since: t0, Error: "connection refused"}},
		{Name: "index", Health: stats.Health{State: stats.HealthDegraded, Since: t0.Add(time.Second)}},
	}}
	cases := []struct {
		at   time.Time
		want []string
	}{
		{t0.Add(90 * time.Second), []string{"store: DOWN for 1m30s: connection refused", "index: degraded for 1m29s: -"}},
		{t0.Add(-time.Second), []string{"store: DOWN for 0s: connection refused", "index: degraded for 0s: -"}},
		{time.Time{}, []string{"store: DOWN since 2026-01-01T12:00:00Z: connection refused", "index: degraded since 2026-01-01T12:00:01Z: -"}},
	}
	for _, c := range cases {
		s.at = c.at
		if got := healthLines(s); !reflect.DeepEqual(got, c.want) {
			t.Errorf("at %v: got %q, want %q", c.at, got, c.want)
		}
	}
}
