package natsq

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// A consumer whose Start fails leaves nothing behind: its goroutines end
// and its connection is released, since a source whose Start failed is
// never closed. Before, both stayed (and, with an embedded server, the
// server and its store's lock).
func TestConsumerStartFailureLeavesNothing(t *testing.T) {
	startConsumer := func(ctx context.Context, url, stream string) error {
		q := NewClient(Config{URL: url}, "test", nil).Queue("store", QueueConfig{Stream: stream}, port.Block, 64)
		_, cons := engine.NewSourceStage(stage.Settings{Name: "store"}, q.Consumer(), nil)
		err := cons.Start(ctx)
		if err == nil {
			cons.Abort()
			cons.Close()
		}
		return err
	}

	t.Run("server away", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := startConsumer(ctx, "nats://127.0.0.1:1", "t_away"); err == nil {
			t.Fatal("Start succeeded with no server")
		}
		if err := goleak.Find(before); err != nil {
			t.Error(err)
		}
	})

	t.Run("durable cannot be updated", func(t *testing.T) {
		srv := natstest.Start(t, natstest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := startConsumer(ctx, srv.URL(), "t_stuck"); err != nil { // makes the streams
			t.Fatal(err)
		}
		// A durable of the stage's name that the consumer's config cannot
		// update: JetStream refuses to change MaxWaiting.
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := js.DeleteConsumer(ctx, "t_stuck", consumerName("store")); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateConsumer(ctx, "t_stuck", jetstream.ConsumerConfig{Durable: consumerName("store"),
			AckPolicy: jetstream.AckExplicitPolicy, MaxWaiting: 7}); err != nil {
			t.Fatal(err)
		}

		before := goleak.IgnoreCurrent()
		if err := startConsumer(ctx, srv.URL(), "t_stuck"); err == nil {
			t.Fatal("Start succeeded with a durable it cannot update")
		}
		poll.Until(t, "the consumer's connection to close (the test's own left)", func() bool {
			return srv.Server().NumClients() == 1
		})
		if err := goleak.Find(before); err != nil {
			t.Error(err)
		}
	})
}
