package natsq

// This file tests the embedded NATS server: a queue in one process, its
// store kept and locked, failures to start, listen, checks and auth.

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
)

// TestEmbeddedQueue: with an embedded server the queue works inside one
// process, and what was published and not consumed is there after the
// process's client stops and another starts on the same store.
func TestEmbeddedQueue(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Embedded: &EmbeddedConfig{StoreDir: dir}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	s := &sink{seen: map[string]int{}}
	c := NewClient(cfg, "test", nil)
	sp := newSplitClients(t, c, c, QueueConfig{Stream: "t_emb"}, stage.Settings{Batch: 32}, s, nil)
	a := newAcks(300)
	sp.send(t, 1, 300, a)
	for seq, err := range a.wait(t) {
		if err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
	}
	waitCount(t, s, 300)
	sp.stop(t)
	if c.emb != nil {
		t.Fatal("the embedded server runs after its last user closed")
	}

	// Published with nobody consuming; then consumed by a new client.
	pub := NewClient(cfg, "test", nil)
	q := pub.Queue("store", QueueConfig{Stream: "t_emb"}, 0, 64)
	p := q.Publisher().(*publisher)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	b := newAcks(50)
	var batch []*stage.Event
	for i := 1001; i <= 1050; i++ {
		batch = append(batch, src.NewEvent([]byte{byte(i), byte(i >> 8)}, uint64(i), stage.Origin{To: b}))
	}
	if err := p.Handle(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	b.wait(t)
	p.Close()

	s2 := &sink{seen: map[string]int{}}
	c2 := NewClient(cfg, "test", nil)
	newSplitClients(t, c2, c2, QueueConfig{Stream: "t_emb"}, stage.Settings{Batch: 32}, s2, nil)
	waitCount(t, s2, 50)
}

// TestEmbeddedStoreLocked: a second server on the same store is refused.
func TestEmbeddedStoreLocked(t *testing.T) {
	dir := t.TempDir()
	e, err := startEmbedded(context.Background(), &EmbeddedConfig{StoreDir: dir}, Config{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.stop()
	if _, err := startEmbedded(context.Background(), &EmbeddedConfig{StoreDir: dir}, Config{}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on the store: %v", err)
	}
}

// An embedded server that cannot run fails at once, saying why: its
// listen address taken, or its store not a directory. It waited two
// minutes, deaf to Ctrl-C, and then said only that it did not start.
func TestEmbeddedCannotStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = startEmbedded(context.Background(), &EmbeddedConfig{StoreDir: t.TempDir(), Listen: ln.Addr().String()}, Config{}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("listen on a port taken: %v, want the server's reason", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jetstream"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = startEmbedded(context.Background(), &EmbeddedConfig{StoreDir: dir}, Config{}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a store that is not a directory: %v, want the server's reason", err)
	}
}

// TestEmbeddedListen: with listen, another process (here a client of its
// own) reaches the embedded server over TCP.
func TestEmbeddedListen(t *testing.T) {
	cfg := Config{Embedded: &EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}}
	c := NewClient(cfg, "test", nil)
	s := &sink{seen: map[string]int{}}
	newSplitClients(t, c, c, QueueConfig{Stream: "t_listen"}, stage.Settings{Batch: 8}, s, nil)
	c.mu.Lock()
	url := c.emb.srv.ClientURL()
	c.mu.Unlock()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":4222") {
		t.Fatalf("client URL %q", url)
	}
	// Another process publishes over TCP; this one consumes.
	other := NewClient(Config{URL: url}, "other", nil)
	q := other.Queue("store", QueueConfig{Stream: "t_listen"}, 0, 64)
	p := q.Publisher().(*publisher)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	a := newAcks(20)
	var batch []*stage.Event
	for i := 1; i <= 20; i++ {
		batch = append(batch, src.NewEvent([]byte{byte(i)}, uint64(i), stage.Origin{To: a}))
	}
	if err := p.Handle(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	a.wait(t)
	waitCount(t, s, 20)
}

func TestEmbeddedCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Embedded: &EmbeddedConfig{}}, "store_dir"},
		{Config{URL: "nats://x:4222", Embedded: &EmbeddedConfig{StoreDir: "d"}}, "no url"},
		{Config{Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "nope"}}, "embedded.listen"},
		// Auth a connection elsewhere takes, which the embedded server has not.
		{Config{NKey: "k.nk", Embedded: &EmbeddedConfig{StoreDir: "d"}}, "nkey: not with an embedded server"},
		{Config{Creds: "c.creds", Embedded: &EmbeddedConfig{StoreDir: "d"}}, "creds: not with an embedded server"},
		{Config{TLS: TLSConfig{CA: "ca.pem"}, Embedded: &EmbeddedConfig{StoreDir: "d"}}, "tls: not with an embedded server"},
		// Every interface without a token: anyone who reaches the port.
		{Config{Embedded: &EmbeddedConfig{StoreDir: "d", Listen: ":0"}}, `embedded.listen: ":0" is not a loopback address`},
		{Config{Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "0.0.0.0:4222"}}, "set token (or user and password)"},
		// A user without a password is no secret.
		{Config{User: "u", Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "0.0.0.0:4222"}}, "set token (or user and password)"},
	} {
		if err := tc.cfg.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []Config{
		{Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "127.0.0.1:0"}},
		{Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "localhost:0"}},
		{Token: "t", Embedded: &EmbeddedConfig{StoreDir: "d", Listen: ":0"}},
		{User: "u", Password: "p", Embedded: &EmbeddedConfig{StoreDir: "d", Listen: "0.0.0.0:0"}},
	} {
		if err := cfg.Check(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// TestEmbeddedAuth: the embedded server requires the configured token of
// every connection, this process's in-process one included: before, the
// token was checked by nobody, and a server listening off loopback took
// anyone.
func TestEmbeddedAuth(t *testing.T) {
	const token = "s3cret-token"
	cfg := Config{Token: token, Embedded: &EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	c := NewClient(cfg, "test", nil)
	s := &sink{seen: map[string]int{}}
	sp := newSplitClients(t, c, c, QueueConfig{Stream: "t_auth"}, stage.Settings{Batch: 8}, s, nil)
	a := newAcks(10)
	sp.send(t, 1, 10, a)
	a.wait(t)
	waitCount(t, s, 10)
	c.mu.Lock()
	url := c.emb.srv.ClientURL()
	c.mu.Unlock()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a connection without the token was taken")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("without the token: %v, want an authorization error", err)
	}
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	nc.Close()
}
