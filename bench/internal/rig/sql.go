package rig

// This file holds the SQL the benchmarks run against their PostgreSQL:
// the events table (create, drop, check what was stored), statements and
// one-value queries.

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// QueryString runs q, which returns one text value, on dsn.
func QueryString(ctx context.Context, dsn, q string, out *string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("rig: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}

// QueryInt runs q, which returns one integer, on dsn.
func QueryInt(ctx context.Context, dsn, q string, out *int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("rig: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q).Scan(out)
}

// CreateTable (re)creates table as (id bigint primary key, body jsonb).
func CreateTable(ctx context.Context, dsn, table string) error {
	return ExecSQL(ctx, dsn, "DROP TABLE IF EXISTS "+Ident(table),
		"CREATE TABLE "+Ident(table)+" (id bigint PRIMARY KEY, body jsonb)")
}

// DropTable drops table.
func DropTable(ctx context.Context, dsn, table string) error {
	return ExecSQL(ctx, dsn, "DROP TABLE IF EXISTS "+Ident(table))
}

// Ident quotes s as an SQL identifier.
func Ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// ExecSQL runs the statements on dsn, in order.
func ExecSQL(ctx context.Context, dsn string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("rig: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("rig: %s: %w", strings.Fields(q)[0], err)
		}
	}
	return nil
}

// CheckStored verifies that every id in acked is in table, once (the
// primary key guarantees once), and returns how many rows the table holds.
func CheckStored(ctx context.Context, dsn, table string, acked []int64) (rows int64, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("rig: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+Ident(table)).Scan(&rows); err != nil {
		return 0, fmt.Errorf("rig: count: %w", err)
	}
	var missing int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::bigint[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM "+
		Ident(table)+" t WHERE t.id = a.id)", acked).Scan(&missing)
	if err != nil {
		return rows, fmt.Errorf("rig: check acked ids: %w", err)
	}
	if missing > 0 {
		return rows, fmt.Errorf("rig: %d of %d acked ids are not in table %s", missing, len(acked), table)
	}
	return rows, nil
}
