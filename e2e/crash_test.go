package e2e

// This file tests pipectl run killed with SIGKILL and restarted while a
// client sends: every acked record is stored, each exactly once.

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

// TestCrashAndRestart runs `pipectl run` against a PostgreSQL that
// outlives it, kills it with SIGKILL at three random moments while a
// resending client sends, and restarts it each time. After each kill every
// record the client saw acked must be stored; at the end every record is
// stored exactly once.
func TestCrashAndRestart(t *testing.T) {
	t.Parallel()
	n := 30000
	if testing.Short() {
		n = 8000
	}
	bin := gobuild.ForTest(t, gobuild.Options{})
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	dsn := srv.DSN()
	file := writeFile(t, "crash.yaml", strings.ReplaceAll(ingest("", storeDefaults), "${DSN}", dsn))

	var addr atomic.Value
	p := startPipectl(t, bin, file)
	addr.Store(p.addr)
	rs := newResender(func() string { return addr.Load().(string) }, 50, 20*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := rs.runShares(ctx, n, 4)

	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	for k := 1; k <= 3; k++ {
		d := time.Duration(200+rng.IntN(800)) * time.Millisecond
		select {
		case <-time.After(d):
		case <-sh.done:
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", k, err)
		}
		p.wait(t, wait)
		acked := rs.ackedIDs()
		stored := storedIDs(t, dsn, "events")
		ids, lost := missing(acked, stored)
		t.Logf("kill %d (SIGKILL %s after start): %d of %d acked, %d stored, acked-but-missing %d",
			k, d, len(acked), n, len(stored), lost)
		if lost > 0 {
			t.Fatalf("kill %d: %d acked records are not stored, e.g. %v", k, lost, ids)
		}
		if len(acked) == n {
			t.Logf("kill %d came after the client had finished: raise n for a harsher test", k)
		}
		p = startPipectl(t, bin, file)
		addr.Store(p.addr)
	}
	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, wait); code != 0 {
		t.Errorf("pipectl exited with %d after SIGTERM:\n%s", code, p.out)
	}
	acked := rs.ackedIDs()
	rows, distinct := counts(t, dsn, "events")
	t.Logf("end: %s; count(*)=%d distinct=%d", rs.summary(), rows, distinct)
	if len(acked) != n || rows != int64(n) || distinct != int64(n) {
		t.Fatalf("acked %d, count(*)=%d, distinct=%d; want %d each", len(acked), rows, distinct, n)
	}
}
