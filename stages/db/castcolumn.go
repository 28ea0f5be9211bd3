package db

// This file holds the search, under method insert, for the column whose
// value PostgreSQL refused: the errors of the INSERT's casts and of the
// assignment to the column name none.

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagedserver/seda/stage"
)

// castColumn returns the column of row i of r (method insert) whose value
// PostgreSQL refuses with err, a data exception that names no column (a
// uuid that is not one, 22P02; text too long for varchar(3), 22001); ""
// when it finds none or cannot look. It writes each of the row's values
// alone, as the INSERT does (cast to the column's type by name, then
// assigned to the column), into a temporary table of the columns' types
// without constraints, in a transaction it rolls back, and takes the
// first column whose value fails with err's code and message. It runs only
// for a row refused alone, after bisection, and needs no right on the
// table; a role that may not make temporary tables gets no column named.
func (s *Sink) castColumn(ctx context.Context, r *rows, i int, err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "22") {
		return ""
	}
	var name string
	stage.Blocking(ctx, func() { name = s.probeCasts(ctx, r, i, pe) })
	return name
}

func (s *Sink) probeCasts(ctx context.Context, r *rows, i int, pe *pgconn.PgError) string {
	ctx, done := s.writeContext(ctx)
	defer func() { _ = done(nil) }()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return ""
	}
	defer func() { s.release(conn, err, &backend{}) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return ""
	}
	defer func() { _ = tx.Rollback(ctx) }()
	defs := make([]string, len(r.lay.cols))
	for c, col := range r.lay.cols {
		defs[c] = quoteIdent(col.name) + " " + col.full
	}
	// pgx.QueryExecModeExec: no statement is prepared and cached for a
	// table that is gone when the transaction ends.
	if _, err = tx.Exec(ctx, "CREATE TEMP TABLE "+probeTable+" ("+strings.Join(defs, ", ")+") ON COMMIT DROP", pgx.QueryExecModeExec); err != nil {
		return ""
	}
	for c, col := range r.lay.cols {
		v := r.cols[c][i]
		if !v.Valid {
			continue
		}
		var sp pgx.Tx
		if sp, err = tx.Begin(ctx); err != nil { // a savepoint
			return ""
		}
		_, err = sp.Exec(ctx, "INSERT INTO pg_temp."+probeTable+" ("+quoteIdent(col.name)+") SELECT $1::text::"+col.cast, pgx.QueryExecModeExec, v.String)
		var got *pgconn.PgError
		if errors.As(err, &got) && got.Code == pe.Code && got.Message == pe.Message {
			err = nil
			return col.name
		}
		if err = sp.Rollback(ctx); err != nil {
			return ""
		}
	}
	return ""
}

// probeTable is the temporary table castColumn writes values into.
const probeTable = "_seda_probe"
