package db_test

// This file shows db.postgres in a pipeline, as a program runs it.

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/db"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

// Stock levels arrive over TCP, one JSON object per line, and db.postgres
// keeps one row per sku (conflict: update). With version: rev a row is
// overwritten only by a record of the same or a higher rev, so the update
// that arrives late and out of order (rev 1 after rev 2) changes nothing.
// Each record is acked once the transaction holding it has committed.
func Example() {
	ctx := context.Background()
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Fast: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Remove(ctx)

	reg := stage.NewRegistry()
	for _, register := range []func(*stage.Registry) error{netio.Register, process.Register, db.Register} {
		if err := register(reg); err != nil {
			fmt.Println(err)
			return
		}
	}
	env := func(name string) (string, bool) {
		if name == "STOCK_DSN" {
			return srv.DSN(), true
		}
		return os.LookupEnv(name)
	}
	cfg, err := pipeline.Parse("stock.yaml", []byte(`
name: stock
stages:
  in: {kind: netio.tcp, listen: "127.0.0.1:0", next: parse}
  parse: {kind: process.json, require: [sku, rev], inline: true, next: store}
  store:
    kind: db.postgres
    dsn: ${STOCK_DSN}
    table: stock
    create: true
    columns: {sku: sku, qty: qty, rev: rev}
    types: {qty: bigint, rev: bigint}
    key: [sku]
    conflict: update
    version: rev
`), reg, env)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	c, err := wire.DialOptions(ctx, p.Addr("in").String(), wire.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Send([]byte(`{"sku": "apple", "qty": 10, "rev": 1}`))
	c.Send([]byte(`{"sku": "pear", "qty": 4, "rev": 1}`))
	c.Send([]byte(`{"sku": "apple", "qty": 7, "rev": 2}`))
	c.Send([]byte(`{"sku": "apple", "qty": 10, "rev": 1}`)) // late: rev 2 is stored
	c.CloseWrite()
	<-c.Done() // the server closes once it owes nothing
	fmt.Println("acked", c.Acked())
	c.Close()
	if _, err := p.Stop(ctx); err != nil {
		fmt.Println(err)
	}

	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT sku, qty, rev FROM stock ORDER BY sku")
	var sku string
	var qty, rev int64
	_, err = pgx.ForEachRow(rows, []any{&sku, &qty, &rev}, func() error {
		fmt.Printf("%s: %d (rev %d)\n", sku, qty, rev)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// acked 4
	// apple: 7 (rev 2)
	// pear: 4 (rev 1)
}
