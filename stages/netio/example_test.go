package netio_test

// This file shows netio.tcp in a pipeline, as a program runs it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A netio.tcp source feeding a stage that refuses records containing
// "bad": the client gets a nack for the refused record, before the
// cumulative ack that covers all three, and then the end of the
// connection.
func Example() {
	reg := stage.NewRegistry()
	netio.Register(reg)
	reg.Register(stage.Kind{Name: "example.store", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
				for _, ev := range b {
					if bytes.Contains(ev.Payload, []byte("bad")) {
						ev.Done(errors.New("no bad records"))
					} else {
						ev.Done(nil)
					}
				}
				return nil
			}), nil
		}})
	cfg, err := pipeline.Parse("in.yaml", []byte(`
name: in
stages:
  in: {kind: netio.tcp, listen: "127.0.0.1:0", next: store}
  store: {kind: example.store, workers: 1}
`), reg, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	c, _ := wire.DialOptions(ctx, p.Addr("in").String(), wire.Options{OnReply: func(r wire.Reply) {
		if r.Nack { // acks may come one by one or coalesced: print the nacks
			fmt.Println(r)
		}
	}})
	c.Send([]byte("hello"))
	c.Send([]byte("a bad record"))
	c.Send([]byte("world"))
	c.CloseWrite()
	<-c.Done() // the server closes once it owes nothing
	fmt.Println("acked", c.Acked())
	c.Close()
	if _, err := p.Stop(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// nack 2 stage "store": no bad records
	// acked 3
}
