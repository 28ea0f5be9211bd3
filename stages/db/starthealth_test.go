package db

// This file tests that a Start retrying an unreachable PostgreSQL shows
// the stage down, with the reason, in its stats.

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// TestStartRetriesShowInHealth: a store whose Start retries an
// unreachable PostgreSQL (on_start: retry; with its queue on NATS the
// pipeline starts it in the background, serving meanwhile) shows down in
// its stats, with the reason, rather than ok: each failed attempt is
// reported to the stage's health, which Start's context carries.
func TestStartRetriesShowInHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every connection is refused
	sink := newSink(t, config("postgres://postgres:hunter2secret@"+addr+"/db?sslmode=disable", nil), nil)
	st, l := engine.NewHandlerStage(stage.Settings{Name: "store", Kind: Kind, Terminal: true}, sink, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Start(ctx) }()
	poll.Until(t, "the store to show down", func() bool { return st.Stats().Health.State == stats.HealthDown })
	h := st.Stats().Health
	if !strings.Contains(h.Error, "not reachable yet") || h.Failures < 2 || strings.Contains(h.Error, "hunter2secret") {
		t.Errorf("health %+v: want the failed attempts, the reason, no password", h)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Start succeeded against nothing")
	}
}
