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

// maxCastSearches is the most rows of one batch whose column castColumns
// looks for: each costs a savepoint and an INSERT per column, and a batch
// of hundreds of refused rows cost several times its write. The rows
// past it are refused naming no column.
const maxCastSearches = 16

// unnamed is a row of a batch (method insert) PostgreSQL refused alone
// with err naming no column, left for castColumns to look for its column
// and refuse.
type unnamed struct {
	i   int // the row's index in rows
	err error
}

// castable reports whether err is one castColumns looks for a column of:
// a data exception (a uuid that is not one, 22P02; text too long for
// varchar(3), 22001).
func castable(err error) bool { return strings.HasPrefix(sqlState(err), "22") }

// refuseUnnamed refuses the rows of r.unnamed, each naming the column
// castColumns finds for it, and empties the list.
func (s *Sink) refuseUnnamed(ctx context.Context, r *rows) {
	if len(r.unnamed) == 0 {
		return
	}
	var names []string
	stage.Blocking(ctx, func() { names = s.castColumns(ctx, r) })
	for k, u := range r.unnamed {
		name := ""
		if k < len(names) {
			name = names[k]
		}
		r.evs[u.i].Done(s.refusalAt(r.evs[u.i], name, u.err))
	}
	clear(r.unnamed)
	r.unnamed = r.unnamed[:0]
}

// castColumns returns, for the first maxCastSearches rows of r.unnamed
// (method insert), the column whose value PostgreSQL refuses with the
// row's error; "" when it finds none. In one transaction, which it rolls
// back, it makes a temporary table of the columns' types without
// constraints, and writes each row's values alone into it, as the INSERT
// does (cast to the column's type by name, then assigned to the column),
// each in a savepoint: a row's column is the first whose value fails with
// the row's code and message. It needs no right on the table; a role
// that may not make temporary tables gets no column named.
func (s *Sink) castColumns(ctx context.Context, r *rows) []string {
	ctx, done := s.writeContext(ctx)
	defer func() { _ = done(nil) }()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil
	}
	defer func() { s.release(conn, err, &backend{}) }()
	s.castSearches.Add(1)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil
	}
	defer func() { _ = tx.Rollback(ctx) }()
	defs := make([]string, len(r.lay.cols))
	for c, col := range r.lay.cols {
		defs[c] = quoteIdent(col.name) + " " + col.full
	}
	// pgx.QueryExecModeExec: no statement is prepared and cached for a
	// table that is gone when the transaction ends.
	if _, err = tx.Exec(ctx, "CREATE TEMP TABLE "+probeTable+" ("+strings.Join(defs, ", ")+") ON COMMIT DROP", pgx.QueryExecModeExec); err != nil {
		return nil
	}
	names := make([]string, min(len(r.unnamed), maxCastSearches))
	for k := range names {
		var pe *pgconn.PgError
		if !errors.As(r.unnamed[k].err, &pe) {
			continue
		}
		s.castRows.Add(1)
		if names[k], err = s.castColumn(ctx, tx, r, r.unnamed[k].i, pe); err != nil {
			return names
		}
	}
	return names
}

// castColumn looks, in tx (castColumns), for the column of row i of r
// whose value fails with pe's code and message; err ends the search.
func (s *Sink) castColumn(ctx context.Context, tx pgx.Tx, r *rows, i int, pe *pgconn.PgError) (name string, err error) {
	for c, col := range r.lay.cols {
		v := r.cols[c][i]
		if !v.Valid {
			continue
		}
		sp, err := tx.Begin(ctx) // a savepoint
		if err != nil {
			return "", err
		}
		_, err = sp.Exec(ctx, "INSERT INTO pg_temp."+probeTable+" ("+quoteIdent(col.name)+") SELECT $1::text::"+col.cast, pgx.QueryExecModeExec, v.String)
		var got *pgconn.PgError
		found := errors.As(err, &got) && got.Code == pe.Code && got.Message == pe.Message
		if err = sp.Rollback(ctx); err != nil {
			return "", err
		}
		if found {
			return col.name, nil
		}
	}
	return "", nil
}

// probeTable is the temporary table castColumns writes values into.
const probeTable = "_seda_probe"
