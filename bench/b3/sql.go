package b3

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

func queryString(ctx context.Context, dsn, q string, out *string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}

func queryInt(ctx context.Context, dsn, q string, out *int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}
