package main

// This file tests the program's pipeline in process: of three records,
// one is printed, one dropped by its function, and one nacked.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestEmbed(t *testing.T) {
	var out lockedBuffer
	reg, err := newRegistry(&out)
	if err != nil {
		t.Fatal(err)
	}
	env := func(name string) (string, bool) {
		if name == "EMBED_LISTEN" {
			return "127.0.0.1:0", true
		}
		return "", false
	}
	cfg, err := pipeline.Parse("embed.yaml", []byte(pipelineYAML), reg, env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := p.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	addr := p.Addr("accept").String()

	c, err := wire.Dial(ctx, addr, wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, rec := range []string{
		`{"level":"error","msg":"disk full"}`,
		`{"level":"debug","msg":"dropped by tag"}`,
		`{"msg":"no level"}`,
	} {
		if _, err := c.Send([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != 3 {
		t.Errorf("acked up to %d, want 3", c.Acked())
	}
	if n := c.Nacks(); len(n) != 1 || n[0].N != 3 || !strings.Contains(n[0].Reason, "level") {
		t.Errorf("nacks %v, want one for record 3 naming the missing field", n)
	}
	want := `embed: {"level":"error","msg":"disk full","seen_by":"embed"}` + "\n"
	if got := out.String(); got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
}
