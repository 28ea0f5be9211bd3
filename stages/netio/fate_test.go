package netio_test

// This file tests the shutdown report's fates for netio.tcp: what a cut
// short drain says became of records under ack: none and ack: commit.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

// fatePipeline runs netio.tcp (with ack) into a sink that stores record
// 1 and holds every other until its context ends, then fails it with the
// context's error, as a database sink cut off by a forced stop does. It
// returns the pipeline and how many records the sink holds.
func fatePipeline(t *testing.T, ack string) (*pipeline.Pipeline, *atomic.Int64) {
	t.Helper()
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	var held atomic.Int64
	if err := reg.Register(stage.Kind{Name: "test.stuck", Doc: "stores record 1, holds the rest", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
				var rest []*stage.Event
				for _, ev := range b {
					if ev.Seq == 1 {
						ev.Done(nil)
					} else {
						rest = append(rest, ev)
					}
				}
				if len(rest) == 0 {
					return nil
				}
				held.Add(int64(len(rest)))
				<-ctx.Done()
				stage.DoneAll(rest, fmt.Errorf("store: %w", ctx.Err()))
				return nil
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	// One worker taking one record at a time: record 2 is held in the
	// sink, 3 to 5 wait in its queue and are abandoned.
	yaml := "name: t\nstages:\n  in:\n    kind: netio.tcp\n    listen: 127.0.0.1:0\n    ack: " + ack +
		"\n    next: out\n  out:\n    kind: test.stuck\n    workers: 1\n    batch: 1\n"
	pc, err := pipeline.Parse("p.yaml", []byte(yaml), reg, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return p, &held
}

// stopCutShort sends five records, waits until the sink holds record 2
// and the source counts all five in flight (record 1 stored, 3 to 5
// queued), then stops the pipeline with a drain deadline already past.
func stopCutShort(t *testing.T, p *pipeline.Pipeline, held *atomic.Int64) (*wire.Client, pipeline.StopReport, error) {
	t.Helper()
	c, err := wire.DialOptions(context.Background(), p.Addr("in").String(), wire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i := 1; i <= 5; i++ {
		if _, err := c.Send([]byte(fmt.Sprintf("rec %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "record 2 held in the sink and 4 records in flight", func() bool {
		st, _ := p.StageStats("in")
		return held.Load() == 1 && st.InFlight == 4
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the drain deadline has passed: phase two at once
	var rep pipeline.StopReport
	var wg sync.WaitGroup
	wg.Go(func() { rep, err = p.Stop(ctx) })
	wg.Wait()
	return c, rep, err
}

// Under ack: none a record failed by a forced stop (context canceled),
// and those abandoned in the queue, are lost: nobody told the client. The
// report counts the events the stop found in flight, so record 1, stored
// before, is not in it.
func TestFatesAckNoneLostToCancelledDrain(t *testing.T) {
	p, held := fatePipeline(t, "none")
	_, rep, err := stopCutShort(t, p, held)
	want := stats.Fates{Lost: 4} // record 1 was stored before the stop began
	if rep.Fates != want {
		t.Errorf("fates %+v, want %+v", rep.Fates, want)
	}
	if !rep.Forced || rep.Abandoned != 3 {
		t.Errorf("report %+v, want forced with 3 abandoned", rep)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "0 stored, 0 redelivered later (NATS), 4 lost (ack: none), 0 left for clients to resend") {
		t.Errorf("Stop error %v, want it to wrap context.Canceled and say the fates", err)
	}
}

// Under ack: commit the records not acked when a forced stop closes the
// connection (failed or abandoned) are the client's to resend: its
// connection ends with them unacked.
func TestFatesAckCommitLeftToResend(t *testing.T) {
	p, held := fatePipeline(t, "commit")
	c, rep, err := stopCutShort(t, p, held)
	want := stats.Fates{Resend: 4} // record 1 was stored before the stop began
	if rep.Fates != want {
		t.Errorf("fates %+v, want %+v", rep.Fates, want)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "4 left for clients to resend") {
		t.Errorf("Stop error %v, want it to wrap context.Canceled and say the fates", err)
	}
	<-c.Done() // the connection is closed
	// The client has record 1 acked at most, every other nacked or
	// unacked: four to resend, as the report says.
	if left := c.Sent() - c.Acked() + c.Nacked(); left != 4 {
		t.Errorf("client: sent %d, acked %d, nacked %d: %d left to resend, want 4", c.Sent(), c.Acked(), c.Nacked(), left)
	}
}
