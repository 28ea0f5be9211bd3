package naive_test

// This file tests the naive server: acked rows stored once, bad records
// nacked.

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/naive"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/wire"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestAckedRowsStoredOnce: every record is acked and stored once.
func TestAckedRowsStoredOnce(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rig.CreateTable(ctx, dsn, "events"); err != nil {
		t.Fatal(err)
	}
	s, err := naive.Start(ctx, naive.Config{DSN: dsn, Table: "events", MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	rows, err := rig.CheckStored(ctx, dsn, "events", res.AckedIDs)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2000 {
		t.Errorf("%d rows, want 2000", rows)
	}
}

// TestBadRecordNacked: a record that is not JSON, or has no id, is nacked
// and the connection goes on.
func TestBadRecordNacked(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rig.CreateTable(ctx, dsn, "events"); err != nil {
		t.Fatal(err)
	}
	s, err := naive.Start(ctx, naive.Config{DSN: dsn, Table: "events", MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := wire.Dial(ctx, s.Addr(), wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, rec := range []string{`{"id":1}`, `not json`, `{"x":2}`, `{"id":4}`} {
		if _, err := c.Send([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	c.Flush()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	nacks := c.Nacks()
	if c.Acked() != 4 || len(nacks) != 2 || nacks[0].N != 2 || nacks[1].N != 3 {
		t.Fatalf("acked %d, nacks %v; want 4 and nacks of 2 and 3", c.Acked(), nacks)
	}
	rows, err := rig.CheckStored(ctx, dsn, "events", []int64{1, 4})
	if err != nil || rows != 2 {
		t.Fatalf("rows %d, %v; want 2", rows, err)
	}
}
