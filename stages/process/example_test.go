package process_test

// This file is the package's example: process.func with an embedding
// program's Go functions.

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
		if level, _ := ev.Field("level"); level == "debug" {
			return false, nil // drop: acked, not stored
		}
		if pw, ok := ev.Value("password"); ok && pw.Type() == stage.ValueString {
			ev.Set("password", strings.Repeat("*", len(pw.Bytes())))
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

	evs := []*stage.Event{{Seq: 1}, {Seq: 2}} // as a handler's test makes them
	evs[0].Set("user", "ann")
	evs[0].Set("password", "hunter2")
	evs[1].Set("level", "debug")
	h.Handle(context.Background(), evs, printer{})
	fmt.Println("event 2 finished:", evs[1].Finished())
	// Output:
	// func: unknown func "hash" (known: redact)
	// emit 1: user=ann password=*******
	// event 2 finished: true
}

// printer is an Emitter that prints what it is given.
type printer struct{}

func (printer) Emit(_ context.Context, ev *stage.Event) error {
	fmt.Printf("emit %d: %s\n", ev.Seq, fieldsText(ev))
	return nil
}

func (printer) Flush(context.Context) {}

func (printer) EmitTo(_ context.Context, next string, ev *stage.Event) error {
	fmt.Printf("emit %d to %s: %s\n", ev.Seq, next, fieldsText(ev))
	return nil
}

// fieldsText prints an event's fields as name=value pairs, in order.
func fieldsText(ev *stage.Event) string {
	var parts []string
	for name, v := range ev.Fields() {
		parts = append(parts, name+"="+v.String())
	}
	return strings.Join(parts, " ")
}
