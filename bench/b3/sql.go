package b3

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// QueryString runs q, which returns one text value, on dsn.
func QueryString(ctx context.Context, dsn, q string, out *string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}

// QueryInt runs q, which returns one integer, on dsn.
func QueryInt(ctx context.Context, dsn, q string, out *int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}
