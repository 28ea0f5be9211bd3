package process_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/process"
)

// An embedding program adds its Go functions to a Funcs and registers
// process.func with them; a pipeline stage then names one with `func`.
func Example_func() {
	var fs process.Funcs
	fs.Add("redact", func(_ context.Context, ev *stage.Event) (bool, error) {
		if ev.Fields["level"] == "debug" {
			return false, nil // drop: acked, not stored
		}
		if pw, ok := ev.Fields["password"].(string); ok {
			ev.Fields["password"] = strings.Repeat("*", len(pw))
		}
		return true, nil
	})

	reg := stage.NewRegistry()
	if err := process.Register(reg); err != nil {
		panic(err)
	}
	if err := process.RegisterFuncs(reg, &fs); err != nil {
		panic(err)
	}

	// What the pipeline does with `kind: process.func` and `func: redact`.
	kind, _ := reg.Lookup("process.func")
	h, err := kind.NewHandler(stage.NewConfig(map[string]any{"func": "redact"}), stage.Env{Stage: "redact"})
	if err != nil {
		panic(err)
	}
	_, err = kind.NewHandler(stage.NewConfig(map[string]any{"func": "hash"}), stage.Env{Stage: "hash"})
	fmt.Println(err)

	src, _ := stage.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	evs := []*stage.Event{
		src.NewEvent(nil, 1, stage.Origin{}),
		src.NewEvent(nil, 2, stage.Origin{}),
	}
	evs[0].Fields = map[string]any{"user": "ann", "password": "hunter2"}
	evs[1].Fields = map[string]any{"level": "debug"}
	h.Handle(context.Background(), evs, printer{})
	fmt.Println("event 2 finished:", evs[1].Finished())
	// Output:
	// func: unknown func "hash" (known: redact)
	// emit 1: map[password:******* user:ann]
	// event 2 finished: true
}

// printer is an Emitter that prints what it is given.
type printer struct{}

func (printer) Emit(_ context.Context, ev *stage.Event) error {
	fmt.Printf("emit %d: %v\n", ev.Seq, ev.Fields)
	return nil
}

func (printer) EmitTo(_ context.Context, next string, ev *stage.Event) error {
	fmt.Printf("emit %d to %s: %v\n", ev.Seq, next, ev.Fields)
	return nil
}
