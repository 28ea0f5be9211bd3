package stage_test

// This file shows the plugin API from a kind author's side: a source
// that reads records and is told how each ended, and a sink that refuses
// some, run by a pipeline.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// records is an Input: it reads its records and learns, through each
// one's ack, how it ended, as a network source learns which records to
// acknowledge.
type records struct {
	left []string
	n    int
	mu   sync.Mutex
	acks []string
}

func (r *records) Connect(context.Context) error { return nil }

func (r *records) Read(context.Context) ([]byte, func(error), error) {
	if len(r.left) == 0 {
		return nil, nil, stage.ErrEndOfInput // the run ends once all are finished
	}
	rec := r.left[0]
	r.left, r.n = r.left[1:], r.n+1
	n := r.n
	return []byte(rec), func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.acks = append(r.acks, fmt.Sprintf("nack %d %v", n, err))
			return
		}
		r.acks = append(r.acks, fmt.Sprintf("ack %d", n))
	}, nil
}

func (r *records) Close() error { return nil }

// A source of three records feeds a sink that refuses empty ones: each
// record's ack says how it ended, and the sink's errors are counted.
func Example() {
	in := &records{left: []string{"a", "", "c"}}
	reg := stage.NewRegistry()
	for _, k := range []stage.Kind{
		{Name: "example.records", NewInput: func(stage.Config, stage.Env) (stage.Input, error) { return in, nil }},
		{Name: "example.check", Terminal: true, NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
				for _, ev := range batch {
					if len(ev.Payload) == 0 {
						ev.Done(stage.WithClass(fmt.Errorf("empty record"), stage.ErrInvalid))
						continue
					}
					ev.Done(nil) // stored: acked
				}
				return nil
			}), nil
		}},
	} {
		if err := reg.Register(k); err != nil {
			panic(err)
		}
	}
	p, err := pipeline.New(&pipeline.Config{Name: "check", Stages: []*pipeline.StageConfig{
		{Name: "in", Kind: "example.records", Next: "check"},
		{Name: "check", Kind: "example.check"},
	}}, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	if err := p.Run(context.Background()); err != nil {
		panic(err)
	}
	sort.Strings(in.acks)
	fmt.Println(strings.Join(in.acks, "\n"))
	st, _ := p.StageStats("check")
	fmt.Println("errors in check:", st.Errors, stage.ErrorClass(stage.WithClass(fmt.Errorf("x"), stage.ErrInvalid)))
	// Output:
	// ack 1
	// ack 3
	// nack 2 stage "check": empty record
	// errors in check: 1 invalid
}
