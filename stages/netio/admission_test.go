package netio_test

// This file tests netio.tcp under admission control: shedding at the
// door, its field, and no controller left running when Start fails.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// Under admission control, records that arrive while the next queue is
// full are nacked busy at once, before any event is made of them; the
// records let in are acked once finished; every record is answered.
func TestAdmissionShedsAtTheDoor(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{"admission": stage.NewConfig(map[string]any{"target": 250 * time.Millisecond})}, stage.Settings{Workers: 1, Concurrency: 1, Capacity: 4, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	c := r.dial(wire.Lines, nil)
	// Five records: one in the handler, four fill the queue. The first
	// goes alone: sent with the others before the sink's worker has taken
	// it (a worker not yet started, on a busy machine), the fifth would
	// find the queue full and be shed.
	sink := r.sink.Stage()
	c.Send([]byte("in 0"))
	c.Flush()
	poll.Until(t, "the first record in the sink's handler", func() bool { return sink.Stats().In == 1 })
	for i := 1; i < 5; i++ {
		c.Send(fmt.Appendf(nil, "in %d", i))
	}
	c.Flush()
	poll.Until(t, "four records in the sink's queue", func() bool { return sink.Stats().Queue.Depth == 4 })
	// Fifty more find the queue full: refused busy at the door, while the
	// gate is shut. (Their nacks follow the acks of the five ahead of them
	// on the connection: replies are written in record order.)
	const more = 50
	for i := range more {
		c.Send(fmt.Appendf(nil, "out %d", i))
	}
	c.Flush()
	src := r.in.Stage()
	poll.Until(t, "no longer: (src.Stats().Control == nil || src.Stats().Control.Admission.Shed < more)", func() bool { return !(src.Stats().Control == nil || src.Stats().Control.Admission.Shed < more) })
	st := src.Stats()
	if st.Control == nil || st.Control.Admission == nil {
		t.Fatalf("no admission figures in the source's stats: %+v", st.Control)
	}
	if a := st.Control.Admission; a.Shed != more || a.Admitted != 5 || a.TargetMs != 250 {
		t.Errorf("admission stats %+v, want 5 admitted, %d shed, target 250 ms", a, more)
	}
	if st.In != 5 {
		t.Errorf("source made %d events, want 5: a record refused at the door makes none", st.In)
	}
	if st.Source == nil || st.Source.Nacks.Busy != more {
		t.Errorf("source counters %+v, want %d busy nacks", st.Source, more)
	}
	close(gate)
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != 5+more {
		t.Fatalf("acked up to %d, want %d (every record answered)", c.Acked(), 5+more)
	}
	// The burst shed at the door is one range nack.
	if nacks := c.Nacks(); c.Nacked() != more || len(nacks) != 1 || nacks[0] != (wire.Reply{Nack: true, N: 6, Through: 55, Reason: "busy"}) {
		t.Fatalf("%d records nacked by %v, want one line `nack 6-55 busy`", c.Nacked(), nacks)
	}
	if got := len(r.payloads()); got != 5 {
		t.Fatalf("the sink saw %d records, want the 5 let in", got)
	}
}

func TestAdmissionField(t *testing.T) {
	src, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "admission": stage.NewConfig(map[string]any{"target": 250 * time.Millisecond})}, stage.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if got := netio.OptionsOf(src).Admission; got != 250*time.Millisecond {
		t.Fatalf("admission.target read as %s", got)
	}
	if _, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0", "admission": stage.NewConfig(map[string]any{"target": time.Microsecond})}); err == nil {
		t.Fatal("a target of 1µs accepted")
	}
}

func TestAdmissionWithoutTarget(t *testing.T) {
	_, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "admission": stage.NewConfig(map[string]any{})}, stage.Env{})
	var fe *stage.FieldError
	if !errors.As(err, &fe) || fe.Field != "admission" {
		t.Fatalf("admission without a target: %v", err)
	}
}

// A source whose Start fails (its port taken) leaves no admission
// controller running: a source whose Start failed is never closed, and
// only Close stopped it.
func TestAdmissionNotStartedWhenListenFails(t *testing.T) {
	for _, kind := range []string{netio.Kind, netio.HTTPKind} {
		t.Run(kind, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			before := goleak.IgnoreCurrent()
			src, err := newSource(kind, map[string]any{"listen": taken.Addr().String(),
				"admission": stage.NewConfig(map[string]any{"target": 250 * time.Millisecond})})
			if err != nil {
				t.Fatal(err)
			}
			_, in := engine.NewSourceStage(stage.Settings{Name: "in", Kind: kind, Workers: 1, Concurrency: 1, Capacity: 4}, src, zap.NewNop())
			if err := in.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on") {
				t.Fatalf("Start on a taken port: %v", err)
			}
			if err := goleak.Find(before); err != nil {
				t.Error(err)
			}
		})
	}
}
