package natsq

// This file tests starting a consumer: a failed start leaves nothing
// behind, and the connect's retries show no secret.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

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
		js := natstest.JetStream(t, srv.URL())
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

// No secret of the configured URL reaches a log line or an error while
// the connect is retried: a token (nats://TOKEN@host), in a list of
// servers too, and a password that makes the URL unparseable (url.Parse's
// error quotes the URL whole, where Redact cannot find the password).
// Config.Check refuses the last without showing it.
func TestConnectShowsNoSecret(t *testing.T) {
	for _, u := range []string{
		"nats://S3CRETTOKEN@127.0.0.1:1",
		"nats://S3CRETTOKEN@127.0.0.1:1,nats://S3CRETTOKEN@127.0.0.2:1",
		"nats://user:pa S3CRET@127.0.0.1:1",
		"nats://user:S3CRET%zz@127.0.0.1:1",
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		q := NewClient(Config{URL: u}, "test", zap.New(core)).Queue("store", QueueConfig{Stream: "t_secret"}, port.Block, 64)
		_, cons := engine.NewSourceStage(stage.Settings{Name: "store"}, q.Consumer(), nil)
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan error, 1)
		go func() { started <- cons.Start(ctx) }()
		poll.Until(t, "a failed connect logged", func() bool { return logs.FilterMessageSnippet("cannot connect").Len() > 0 })
		cancel()
		err := <-started
		if err == nil || strings.Contains(err.Error(), "S3CRET") {
			t.Errorf("%s: Start: %v", u, err)
		}
		for _, e := range logs.All() {
			line := e.Message
			for k, v := range e.ContextMap() {
				line += fmt.Sprintf(" %s=%v", k, v)
			}
			if strings.Contains(line, "S3CRET") {
				t.Errorf("%s: logged %s", u, line)
			}
		}
		if err := (Config{URL: u}).Check(); strings.Contains(u, "pa S3CRET") || strings.Contains(u, "%zz") {
			if err == nil || strings.Contains(err.Error(), "S3CRET") || !strings.Contains(err.Error(), "cannot be parsed") {
				t.Errorf("%s: Check: %v, want a refusal that does not show the URL", u, err)
			}
		} else if err != nil {
			t.Errorf("%s: Check: %v", u, err)
		}
	}
}
