//go:build unix

package pipeline

// This file tests Run's handling of signals: a first SIGINT drains, a
// second forces the stop.

// Signals are sent to the test process itself, which Windows cannot do.

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/stage"
)

// SIGINT starts phase one; a second SIGINT forces phase two.
func TestRunWithSignals(t *testing.T) {
	reg, hub := rtRegistry(t)
	p := rtNew(t, rtConfig(
		rtStage("src", "test.seq", "stuck", stage.Settings{}, map[string]any{"count": 10}),
		rtStage("stuck", "test.block", "", stage.Settings{Workers: 1, Batch: 1}, nil),
	), reg)
	errc := make(chan error, 1)
	go func() { errc <- p.RunWithSignals(context.Background()) }()
	// The handler is installed before Start, so once the pipeline runs a
	// SIGINT reaches it instead of ending the test binary.
	rtWaitState(t, p, "running")
	hub.source(t, "src").waitEmitted(t)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rtWaitState(t, p, "draining")
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RunWithSignals: %v, want the forced stop's error", err)
	}
	if rep, _ := p.Stop(context.Background()); !rep.Forced || rep.Abandoned != 9 {
		t.Errorf("report %+v, want forced with 9 abandoned", rep)
	}
	goleak.VerifyNone(t)
}
