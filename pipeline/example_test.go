package pipeline_test

// This file is the package's example: a source and a pipeline built in
// code, run until every source has ended its input.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// words is a source that reads each word of a text once: a stage.Input.
// The runtime makes the events, emits them, waits for them when the
// pipeline drains and closes it; the end of the text ends the run.
type words struct{ list []string }

func (w *words) Connect(context.Context) error { return nil }

func (w *words) Read(ctx context.Context) ([]byte, func(error), error) {
	if len(w.list) == 0 {
		return nil, nil, stage.ErrEndOfInput
	}
	word := w.list[0]
	w.list = w.list[1:]
	return []byte(word), nil, nil // no ack: nobody is told how a word ended
}

func (w *words) Close() error { return nil }

// An embedding program registers its own kinds, each with its
// configuration spec, builds a pipeline in code (pipeline.Load would read
// the same from YAML) and runs it: until ctx ends, or, as here, until
// every source has ended its input (the words are all read) and what it
// read is finished. examples/fileio has a file source and a JSON-lines
// sink written the same way, and docs/DESIGN.md ("Writing a kind") the
// contracts.
func Example() {
	ctx := context.Background()

	reg := stage.NewRegistry()
	kinds := []stage.Kind{
		{
			Name:   "example.words",
			Doc:    "emits each word of a text once",
			Fields: []stage.Field{{Name: "text", Type: stage.String, Required: true, Doc: "the words to emit"}},
			NewInput: func(cfg stage.Config, env stage.Env) (stage.Input, error) {
				list := strings.Fields(cfg.String("text"))
				if len(list) == 0 {
					return nil, &stage.FieldError{Field: "text", Err: errors.New("no words")}
				}
				return &words{list: list}, nil
			},
		},
		{
			Name: "example.shout",
			Doc:  "upper-cases the record",
			NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
				return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
					for _, ev := range batch {
						ev.Payload = []byte(strings.ToUpper(string(ev.Payload)))
						_ = out.Emit(ctx, ev)
					}
					return nil
				}), nil
			},
		},
		{
			Name:     "example.print",
			Doc:      "prints each record and finishes it",
			Terminal: true,
			NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
				return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
					for _, ev := range batch {
						fmt.Println(string(ev.Payload))
						ev.Done(nil)
					}
					return nil
				}), nil
			},
		},
	}
	for _, k := range kinds {
		if err := reg.Register(k); err != nil {
			fmt.Println(err)
			return
		}
	}

	cfg := &pipeline.Config{Name: "shout", Stages: []*pipeline.StageConfig{
		{Name: "in", Kind: "example.words", Next: "shout",
			Config: stage.NewConfig(map[string]any{"text": "hello staged world"})},
		{Name: "shout", Kind: "example.shout", Next: "out",
			Settings: stage.Settings{Inline: true}},
		{Name: "out", Kind: "example.print",
			Settings: stage.Settings{Workers: 1, Concurrency: 1}}, // one worker: in order
	}}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Run(ctx); err != nil { // until the words end; then drains
		fmt.Println(err)
		return
	}
	s := p.Stats()
	fmt.Println(s.Pipeline, s.State)
	for _, st := range s.Stages {
		fmt.Printf("%s: in %d, out %d, errors %d\n", st.Name, st.In, st.Out, st.Errors)
	}
	// Output:
	// HELLO
	// STAGED
	// WORLD
	// shout stopped
	// in: in 3, out 3, errors 0
	// shout: in 3, out 3, errors 0
	// out: in 3, out 3, errors 0
}
