package natsq_test

// This file shows a queue on NATS as a program uses it: natsq registered
// as a transport, one pipeline file, two processes' worth of pipelines.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// printer is a terminal handler that records what it stores.
type printer struct {
	mu   sync.Mutex
	rows []string
	all  chan struct{} // closed at the third row
}

func (p *printer) Handle(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range batch {
		p.rows = append(p.rows, string(ev.Payload))
		ev.Done(nil) // acks the message in JetStream
		if len(p.rows) == 3 {
			close(p.all)
		}
	}
	return nil
}

// records is a source of three records, then the end of its input.
type records struct{ n int }

func (r *records) Connect(context.Context) error { return nil }
func (r *records) Close() error                  { return nil }
func (r *records) Read(context.Context) ([]byte, func(error), error) {
	if r.n == 3 {
		return nil, nil, stage.ErrEndOfInput
	}
	r.n++
	return fmt.Appendf(nil, `{"id":%d}`, r.n), nil, nil
}

// One pipeline file, run as two processes would run it (pipectl run
// --stages): the front reads and publishes to the store's stream, the
// back consumes it and stores. natsq.Register makes `transport: nats`
// known, as pipectl registers it.
func Example() {
	dir, _ := os.MkdirTemp("", "natsq-example")
	defer os.RemoveAll(dir)
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ns.ReadyForConnections(10 * time.Second)

	p := &printer{all: make(chan struct{})}
	reg := stage.NewRegistry()
	for _, err := range []error{
		natsq.Register(reg),
		reg.Register(stage.Kind{Name: "example.records", NewInput: func(stage.Config, stage.Env) (stage.Input, error) { return &records{}, nil }}),
		reg.Register(stage.Kind{Name: "example.print", Terminal: true, NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return p, nil }}),
	} {
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	file := `
name: example
nats: {url: "` + ns.ClientURL() + `"}
stages:
  accept: {kind: example.records, next: store}
  store: {kind: example.print, queue: {transport: nats, stream: example_store}}
`
	cfg, err := pipeline.Parse("example.yaml", []byte(file), reg, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	back, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop(), Stages: []string{"store"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := back.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	front, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop(), Stages: []string{"accept"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The front's run ends with its input, once JetStream has every record.
	if err := front.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}
	<-p.all
	if _, err := back.Stop(ctx); err != nil { // drains: the back acks what it stored
		fmt.Println(err)
	}
	sort.Strings(p.rows)
	for _, r := range p.rows {
		fmt.Println(r)
	}
	// Output:
	// {"id":1}
	// {"id":2}
	// {"id":3}
}
