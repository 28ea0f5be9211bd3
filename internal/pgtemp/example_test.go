// This file is the package's example: start a server, query it, remove
// it.

package pgtemp_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/pgtemp"
)

func Example() {
	ctx := context.Background()
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Fast: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Remove(ctx)

	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(one)
	// Output: 1
}
