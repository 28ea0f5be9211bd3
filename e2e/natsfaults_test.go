package e2e

// This file tests NATS queues through outages: the external nats-server
// killed and restarted, and the embedded queue riding out a PostgreSQL
// that is down, at start too.

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
)

// TestNatsServerKilled runs the split pipeline (a front and a back) on an
// external nats-server with a file store, kills the server with SIGKILL
// while a resending client sends, and starts it again on the same store:
// every record the client saw acked is stored, each exactly once.
func TestNatsServerKilled(t *testing.T) {
	t.Parallel()
	n := 20000
	if testing.Short() {
		n = 8000
	}
	bin := gobuild.ForTest(t, gobuild.Options{})
	ns := startNatsServer(t)
	dsn := pg.NewDatabase(t)
	file := writeFile(t, "split.yaml", splitYAML(ns.url(), dsn, "e2e_killed", redeliverSoon))
	front := startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	back := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	hc := &http.Client{Timeout: 5 * time.Second}

	rs := newResender(func() string { return front.addr }, 50, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sh := rs.runShares(ctx, n, 4)
	poll.Until(t, "rows stored", func() bool { return storeOut(t, hc, back) > 0 })
	ns.kill()
	t.Logf("nats-server killed after %d acked", len(rs.ackedIDs()))
	ns.start(t)
	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	waitStored(t, dsn, int64(n))
	stopAll(t, front, back)
	checkExactlyOnce(t, rs, dsn, n)
}

// embeddedYAML is the ingest pipeline in one process with a durable
// queue before the store: a JetStream server inside pipectl, its file
// store in dir.
func embeddedYAML(dsn, dir string) string {
	return fmt.Sprintf(`name: durable
nats:
  embedded: {store_dir: %q}
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: %q
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    retry: {backoff: 50ms, max_backoff: 500ms}
    queue: {transport: nats, stream: durable_store, ack_wait: 3s}
`, dir, dsn)
}

// TestEmbeddedQueueRidesOutDatabase: one pipectl with the embedded durable
// queue keeps acking records while PostgreSQL is down (the backlog shows
// as the store's depth), is killed with SIGKILL, and started again on the
// same store once PostgreSQL is back: every acked record is stored, each
// once.
func TestEmbeddedQueueRidesOutDatabase(t *testing.T) {
	t.Parallel()
	rideOutDatabase(t, false)
}

// TestEmbeddedQueueStartsWithDatabaseDown is TestEmbeddedQueueRidesOutDatabase
// with PostgreSQL down before pipectl starts: the store, behind its queue,
// starts in the background (retrying), and the source listens and acks
// meanwhile.
func TestEmbeddedQueueStartsWithDatabaseDown(t *testing.T) {
	t.Parallel()
	rideOutDatabase(t, true)
}

// rideOutDatabase runs the durable-queue pipeline through a PostgreSQL
// outage, stopped before pipectl starts (downFirst) or while it runs.
func rideOutDatabase(t *testing.T, downFirst bool) {
	n := 20000
	if testing.Short() {
		n = 8000
	}
	bin := gobuild.ForTest(t, gobuild.Options{})
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	dsn := srv.DSN()
	file := writeFile(t, "durable.yaml", embeddedYAML(dsn, filepath.Join(t.TempDir(), "nats")))
	hc := &http.Client{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var p *proc
	if !downFirst {
		p = startPipectl(t, bin, file, "--admin", "127.0.0.1:0")
	}
	if err := srv.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	if downFirst {
		p = startPipectl(t, bin, file, "--admin", "127.0.0.1:0")
	}

	var addr atomic.Value
	addr.Store(p.addr)
	rs := newResender(func() string { return addr.Load().(string) }, 100, 0)
	sh := rs.runShares(ctx, n, 4)
	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish with PostgreSQL down: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	if got := len(rs.ackedIDs()); got != n {
		t.Fatalf("%d of %d records acked with PostgreSQL down", got, n)
	}
	var depth int
	poll.Until(t, "the backlog as the store's depth", func() bool {
		st, ok := stageOf(t, hc, p, "store")
		depth = st.Queue.Depth
		return ok && depth > n/2
	})
	t.Logf("all %d acked with PostgreSQL down; store depth %d", n, depth)
	p.signal(t, syscall.SIGKILL)
	p.wait(t, wait)

	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	p = startPipectl(t, bin, file, "--admin", "127.0.0.1:0")
	waitStored(t, dsn, int64(n))
	poll.Until(t, "the backlog to drain", func() bool {
		st, ok := stageOf(t, hc, p, "store")
		return ok && st.Queue.Depth == 0
	})
	stopAll(t, p)
	checkExactlyOnce(t, rs, dsn, n)
}
