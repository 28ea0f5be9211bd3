package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// words is a source that emits each word of a text once. It is told of
// every completion (it is the events' Origin), so Drain knows when all of
// them are finished.
type words struct {
	list []string
	wg   sync.WaitGroup
	left atomic.Int64
	done chan struct{} // closed once every word is finished
}

func (w *words) Start(_ context.Context, rt stage.SourceRuntime) error {
	w.left.Store(int64(len(w.list)))
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		out := rt.NewEmitter()
		for i, word := range w.list {
			_ = out.Emit(context.Background(), rt.NewEvent([]byte(word), uint64(i+1), stage.Origin{To: w}))
		}
		out.Flush(context.Background()) // runs the inline stage downstream
	}()
	return nil
}

func (w *words) Complete(*stage.Event, error) {
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

func (w *words) StopInput(context.Context) error { w.wg.Wait(); return nil }

func (w *words) Drain(ctx context.Context) error {
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *words) Close() error { return nil }

// An embedding program registers its own kinds, each with its
// configuration spec, builds a pipeline in code (pipeline.Load would read
// the same from YAML) and runs it until it is told to stop.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	reg := stage.NewRegistry()
	kinds := []stage.Kind{
		{
			Name:   "example.words",
			Doc:    "emits each word of a text once",
			Fields: []stage.Field{{Name: "text", Type: stage.String, Required: true, Doc: "the words to emit"}},
			NewSource: func(cfg stage.Config, env stage.Env) (stage.Source, error) {
				list := strings.Fields(cfg.String("text"))
				if len(list) == 0 {
					return nil, &stage.FieldError{Field: "text", Err: errors.New("no words")}
				}
				return &words{list: list, done: make(chan struct{})}, nil
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
			Doc:      "prints each record and finishes it; stops the program after `count`",
			Terminal: true,
			Fields:   []stage.Field{{Name: "count", Type: stage.Int, Default: 0, Doc: "records to print before stopping; 0 means never stop"}},
			NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
				var printed atomic.Int64
				stopAfter := int64(cfg.Int("count"))
				return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
					for _, ev := range batch {
						fmt.Println(string(ev.Payload))
						ev.Done(nil)
						if printed.Add(1) == stopAfter {
							cancel()
						}
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
			Settings: stage.Settings{Workers: 1, Concurrency: 1}, // one worker: in order
			Config:   stage.NewConfig(map[string]any{"count": 3})},
	}}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Run(ctx); err != nil { // until the printer cancels ctx; then drains
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
