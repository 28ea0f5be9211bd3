package stage_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
)

// printer is a Completer: it learns how each event ended, as a network
// source learns which records to acknowledge.
type printer struct {
	mu  sync.Mutex
	out []string
}

func (p *printer) Complete(ev *stage.Event, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.out = append(p.out, fmt.Sprintf("nack %d %v", ev.Seq, err))
		return
	}
	p.out = append(p.out, fmt.Sprintf("ack %d", ev.Seq))
}

// A source hands events to an upper-casing stage with its own port and
// pool, which hands them to an inline stage that refuses empty records.
func Example() {
	upper, upperLife := engine.NewHandlerStage(stage.Settings{Name: "upper", Workers: 2},
		stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
			for _, ev := range batch {
				ev.Payload = []byte(strings.ToUpper(string(ev.Payload)))
				out.Emit(ctx, ev)
			}
			return nil
		}), nil)
	check, checkLife := engine.NewHandlerStage(stage.Settings{Name: "check", Inline: true},
		stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
			for _, ev := range batch {
				if len(ev.Payload) == 0 {
					ev.Done(fmt.Errorf("empty record"))
					continue
				}
				out.Emit(ctx, ev) // no next stage: the event is finished
			}
			return nil
		}), nil)
	// The Lifecycle is what starts and stops a stage; whoever creates a
	// stage holds it (pipeline.New does this for a YAML pipeline).
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	srcLife.Connect(upper, nil)
	upperLife.Connect(check, nil)
	checkLife.Connect(nil, nil)
	if err := upperLife.Start(context.Background()); err != nil {
		panic(err)
	}

	p := &printer{}
	em := src.NewEmitter()
	for i, rec := range []string{"a", "", "c"} {
		em.Emit(context.Background(), src.NewEvent([]byte(rec), uint64(i+1), stage.Origin{To: p}))
	}
	em.Flush(context.Background()) // hand the batch over
	upperLife.CloseQueue()         // nothing more will come: drain and stop
	upperLife.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	acks := append([]string(nil), p.out...)
	sort.Strings(acks)
	fmt.Println(strings.Join(acks, "\n"))
	fmt.Println("errors in check:", check.Stats().Errors)
	// Output:
	// ack 1
	// ack 3
	// nack 2 empty record
	// errors in check: 1
}
