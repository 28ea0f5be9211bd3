package e2e

// This file tests a store whose PostgreSQL is down at start (on_start
// retry and fail) and a row PostgreSQL refuses in a batch.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
)

// waitAnswered is cl.WaitTimeout(wait) for a send whose answers take as
// long as the machine's pace makes them: it waits while answers (acks or
// nacks) keep coming, and returns Wait's error once none has come for
// wait, or once the connection has ended. A burst of 32768 bad records
// took 13-21 s under -race on a loaded 2-core machine, and over 30 s with
// GOMAXPROCS=1 beside two busy loops, where a reply wait bounded at 30 s
// in all failed it as a client cut off.
func waitAnswered(cl *wire.Client) error {
	for {
		before := cl.Acked() + cl.Nacked()
		err := cl.WaitTimeout(wait)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || cl.Acked()+cl.Nacked() == before {
			return err
		}
	}
}

// sendAndWait sends ids on one connection and waits for every reply.
func sendAndWait(t *testing.T, addr string, recs [][]byte) *wire.Client {
	t.Helper()
	cl, err := wire.Dial(context.Background(), addr, wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	for _, rec := range recs {
		if _, err := cl.Send(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestPostgresDownAtStartRetry: with on_start: retry, Start waits for a
// PostgreSQL that is down (logging its retries), returns once it is up,
// and records are then acked and stored.
func TestPostgresDownAtStartRetry(t *testing.T) {
	t.Parallel()
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	reg := registry(t)
	core, logs := observer.New(zap.DebugLevel)
	cfg := parse(t, reg, ingest("", storeDefaults+"    on_start: retry\n    retry: {backoff: 50ms, max_backoff: 200ms}\n"),
		map[string]string{"DSN": srv.DSN()})
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- p.Start(ctx) }()
	poll.Until(t, "a logged start retry", func() bool {
		return logs.FilterMessageSnippet("retrying").Len() > 0
	})
	select {
	case err := <-started:
		t.Fatalf("Start returned while PostgreSQL was down: %v", err)
	default:
	}
	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Start did not return after PostgreSQL came up")
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		defer scancel()
		if _, err := p.Stop(sctx); err != nil {
			t.Error(err)
		}
	}()
	var recs [][]byte
	for id := int64(1); id <= 100; id++ {
		recs = append(recs, jsonRecord(id))
	}
	cl := sendAndWait(t, sourceAddr(t, p, "accept"), recs)
	rows, _ := counts(t, srv.DSN(), "events")
	t.Logf("start retried %d times while PostgreSQL was down; then %d acked, %d stored",
		logs.FilterMessageSnippet("retrying").Len(), cl.Acked(), rows)
	if cl.Acked() != 100 || len(cl.Nacks()) > 0 || rows != 100 {
		t.Errorf("acked %d, nacks %v, stored %d; want 100 acked and stored", cl.Acked(), cl.Nacks(), rows)
	}
}

// TestPostgresDownAtStartFail: with on_start: fail, Start fails at once
// with an error naming the stage, and the pipeline is stopped. Nobody
// answers at 127.0.0.1:1 (a stopped server's port could be bound meanwhile
// by a server of another test running in parallel, which would answer).
func TestPostgresDownAtStartFail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := registry(t)
	cfg := parse(t, reg, ingest("", storeDefaults+"    on_start: fail\n"),
		map[string]string{"DSN": "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5"})
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(ctx)
	t.Logf("Start: %v", err)
	if err == nil {
		p.Stop(ctx)
		t.Fatal("Start succeeded with PostgreSQL down and on_start: fail")
	}
	if !strings.Contains(err.Error(), `"store"`) {
		t.Errorf("the error does not name the stage \"store\": %v", err)
	}
	if err := p.Start(ctx); err != pipeline.ErrClosed {
		t.Errorf("Start after a failed start: %v, want ErrClosed", err)
	}
}

// TestBadRowIsolated: a row PostgreSQL refuses (a name longer than
// varchar(5)) in a batch is nacked with PostgreSQL's reason; the rest of
// the batch is acked and stored.
func TestBadRowIsolated(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), `name: badrow
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    next: parse
  parse:
    kind: process.json
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${DSN}
    table: people
    create: true
    columns: {id: id, name: name}
    types: {id: bigint, name: varchar(5)}
    key: [id]
    batch: {max: 100, linger: 100ms}
    workers: 1
`, map[string]string{"DSN": dsn}, nil, "accept")
	var recs [][]byte
	for id := 1; id <= 20; id++ {
		name := "ann"
		if id == 7 {
			name = "bartholomew"
		}
		recs = append(recs, fmt.Appendf(nil, `{"id":%d,"name":%q}`, id, name))
	}
	cl := sendAndWait(t, r.addr, recs)
	nacks := cl.Nacks()
	rows, _ := counts(t, dsn, "people")
	t.Logf("acked %d, nacks %v, stored %d", cl.Acked(), nacks, rows)
	if len(nacks) != 1 || nacks[0].N != 7 || !strings.Contains(nacks[0].Reason, "value too long") {
		t.Errorf("nacks %v, want only record 7, value too long", nacks)
	}
	if cl.Acked() != 20 || rows != 19 {
		t.Errorf("acked %d, stored %d; want 20 and 19", cl.Acked(), rows)
	}
	if storedIDs(t, dsn, "people")[7] {
		t.Error("the refused row is stored")
	}
}
