package chanpipe_test

// This file tests the channel pipeline: acked rows stored once, a bad
// record nacked in order.

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/wire"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestAckedRowsStoredOnce drives the channel pipeline (built by rig from
// the example pipeline's handlers): every record acked after commit,
// every acked id stored once, and a bad record nacked in order.
func TestAckedRowsStoredOnce(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rig.CreateTable(ctx, dsn, "events"); err != nil {
		t.Fatal(err)
	}
	s, err := rig.StartChan(ctx, dsn, "events")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop(context.Background())
		}
	}()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: s.Addr(), Conns: 4, Records: 2000, Window: 100, CollectIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Acked != 2000 || res.Nacked != 0 {
		t.Fatalf("acked %d nacked %d, want 2000 and 0", res.Acked, res.Nacked)
	}

	c, err := wire.Dial(ctx, s.Addr(), wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []string{`{"id":100001}`, `{"x":1}`, `{"id":100003}`} {
		if _, err := c.Send([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	c.Flush()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if nacks := c.Nacks(); c.Acked() != 3 || len(nacks) != 1 || nacks[0].N != 2 {
		t.Fatalf("acked %d, nacks %v; want 3 and a nack of 2", c.Acked(), nacks)
	}
	c.Close()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	rows, err := rig.CheckStored(ctx, dsn, "events", append(res.AckedIDs, 100001, 100003))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2002 {
		t.Errorf("%d rows, want 2002", rows)
	}
}
