package netio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A netio source feeding a stage that refuses records containing "bad":
// the client gets a nack for the refused record, before the cumulative ack
// that covers all three, and then the end of the connection.
func Example() {
	src, _ := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0"})
	_, in := engine.NewSourceStage(stage.Settings{Name: "in", Kind: netio.Kind, Workers: 1}, src, nil)
	_, sink := engine.NewHandlerStage(stage.Settings{Name: "store", Workers: 1},
		stage.HandlerFunc(func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
			for _, ev := range b {
				if bytes.Contains(ev.Payload, []byte("bad")) {
					ev.Done(errors.New("no bad records"))
				} else {
					ev.Done(nil)
				}
			}
			return nil
		}), nil)
	in.Connect(sink.Stage(), nil)
	ctx := context.Background()
	sink.Start(ctx)
	in.Start(ctx)

	c, _ := wire.DialOptions(ctx, src.(*netio.Source).Addr().String(), wire.Options{OnReply: func(r wire.Reply) {
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

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	src.Drain(ctx)
	sink.CloseQueue()
	sink.Wait()
	in.Close()
	// Output:
	// nack 2 no bad records
	// acked 3
}
