package netio_test

// This file tests what a drain does with input that keeps coming under
// ack: none: it is counted and reported, not dropped unseen.

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A sender under ack: none that keeps sending through the drain: every
// line it sent is either stored or counted lost in the drain report, its
// bytes are all in bytes_in, and the loss is logged at warn with the
// connection. The client sends 100 lines after it has read the server's
// half-close, so some are certainly read after the source stopped taking
// input, and then closes, which ends the linger.
func TestDrainAckNoneCountsDiscarded(t *testing.T) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	var stored atomic.Int64
	if err := reg.Register(stage.Kind{Name: "test.count", Doc: "stores every record", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
				stored.Add(int64(len(b)))
				stage.DoneAll(b, nil)
				return nil
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	yaml := "name: t\nstages:\n  in:\n    kind: netio.tcp\n    listen: 127.0.0.1:0\n    ack: none\n    drain_linger: 1m\n" +
		"    next: out\n  out:\n    kind: test.count\n"
	pc, err := pipeline.Parse("p.yaml", []byte(yaml), reg, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	p, err := pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", p.Addr("in").String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var eof atomic.Bool // the server half-closed: the drain has begun
	go func() {
		io.Copy(io.Discard, nc) // ack: none: nothing comes but the EOF
		eof.Store(true)
	}()
	var sent, sentBytes int
	var wg sync.WaitGroup
	wg.Go(func() {
		after := 0
		for after < 100 {
			if eof.Load() {
				after++
			}
			sent++
			line := fmt.Sprintf("<13>record %d\n", sent)
			n, err := io.WriteString(nc, line)
			sentBytes += n
			if err != nil {
				t.Errorf("write %d: %v", sent, err)
				return
			}
		}
		nc.(*net.TCPConn).CloseWrite() // ends the linger
	})
	poll.Until(t, "records stored", func() bool { return stored.Load() >= 100 })
	rep, err := p.Stop(ctx)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := uint64(stored.Load()) + rep.Fates.Lost; got != uint64(sent) {
		t.Errorf("sent %d, stored %d and %d lost (report %s): %d unaccounted for",
			sent, stored.Load(), rep.Fates.Lost, rep.Fates, int64(sent)-int64(got))
	}
	if rep.Fates.Lost < 100 {
		t.Errorf("report %s: want at least the 100 lines sent after the half-close lost", rep.Fates)
	}
	st, _ := p.StageStats("in")
	if st.Source == nil || st.Source.BytesIn != uint64(sentBytes) {
		t.Errorf("source stats %+v: want bytes_in %d", st.Source, sentBytes)
	}
	if st.In != uint64(sent) || st.Errors != rep.Fates.Lost {
		t.Errorf("stage stats: in %d, errors %d: want in %d, errors %d (the records lost)", st.In, st.Errors, sent, rep.Fates.Lost)
	}
	ws := logs.FilterMessageSnippet("discarded").All()
	if len(ws) != 1 {
		t.Fatalf("want one warning of the records discarded, got %v", logs.All())
	}
	fs := ws[0].ContextMap()
	if fmt.Sprint(fs["records"]) != fmt.Sprint(rep.Fates.Lost) || fs["conn"] == nil || fs["remote"] != nc.LocalAddr().String() {
		t.Errorf("warning %v: want records %d and the connection", fs, rep.Fates.Lost)
	}
}
