package natsq_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stage"
)

// printer is a terminal handler that records what it stores.
type printer struct {
	mu   sync.Mutex
	rows []string
}

func (p *printer) Handle(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range batch {
		host, _ := ev.Field("host")
		p.rows = append(p.rows, fmt.Sprintf("%s from %v", ev.Payload, host))
		ev.Done(nil) // acks the message in JetStream
	}
	return nil
}

// A queue seen from two processes: the front's stand-in publishes, the
// back's consumer feeds the stage that stores. (A pipeline file does all
// of this with `queue: {transport: nats, stream: NAME}`.)
func Example() {
	dir, _ := os.MkdirTemp("", "natsq-example")
	defer os.RemoveAll(dir)
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ns.ReadyForConnections(10 * time.Second)
	cfg := natsq.Config{URL: ns.ClientURL()}
	qc := natsq.QueueConfig{Stream: "example_store"}
	ctx := context.Background()

	// The back: a consumer feeding the store stage.
	back := natsq.NewClient(cfg, "example", nil)
	p := &printer{}
	_, store := engine.NewHandlerStage(stage.Settings{Name: "store", Terminal: true}, p, nil)
	_, cons := engine.NewSourceStage(stage.Settings{Name: "store"}, back.Queue("store", qc, 0, 64).Consumer(), nil)
	cons.Connect(store.Stage(), nil)

	// The front: a source whose next stage is the stand-in publisher.
	front := natsq.NewClient(cfg, "example", nil)
	_, pub := engine.NewHandlerStage(stage.Settings{Name: "store"}, front.Queue("store", qc, 0, 64).Publisher(), nil)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "accept"}, nil, nil)
	srcLife.Connect(pub.Stage(), nil)

	for _, st := range []engine.Lifecycle{store, cons, pub} {
		if err := st.Start(ctx); err != nil {
			fmt.Println(err)
			return
		}
	}
	out := src.NewEmitter()
	for i, host := range []string{"web-1", "web-2", "web-3"} {
		ev := src.NewEvent(fmt.Appendf(nil, `{"id":%d}`, i+1), uint64(i+1), stage.Origin{})
		ev.Set("host", host)
		out.Emit(ctx, ev)
	}
	out.Flush(ctx)

	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		n := len(p.rows)
		p.mu.Unlock()
		if n == 3 {
			break
		}
	}
	// Drain as a pipeline does: stop pulling, finish and ack, close.
	cons.StopInput(ctx)
	for _, st := range []engine.Lifecycle{pub, store} {
		st.CloseQueue()
		st.Wait()
	}
	cons.Drain(ctx)
	for _, st := range []engine.Lifecycle{cons, pub, store} {
		st.Close()
	}
	sort.Strings(p.rows)
	for _, r := range p.rows {
		fmt.Println(r)
	}
	// Output:
	// {"id":1} from web-1
	// {"id":2} from web-2
	// {"id":3} from web-3
}
