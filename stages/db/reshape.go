package db

// This file holds the table's layout as the sink writes it (its columns'
// types, COPY's format, the statements), and its re-reading when a write
// finds that a column's type changed under the running stage.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// layout is what the sink read from the table and writes by: each
// column's type and how its values are encoded, and the statements. It
// is never changed once made: a batch is encoded and written with the
// layout it started with (rows.lay), and a table whose column changed
// type gets a new one (reshaped).
type layout struct {
	cols   []column // the configured columns, with the fields Start fills
	sig    string   // each column's type, as read: another means the shape changed
	binary bool     // COPY in the binary format: every column has one
	// sortCol is the column of a single integer key (method copy), whose
	// order a group's rows are written in; -1: none.
	sortCol                                         int
	copySQL, tempSQL, copyTempSQL, mergeSQL, insSQL string
	// loadName is the load table's name, of its shape (loadTableName).
	loadName string
	// tempTxSQL makes the load table in each write's transaction, once
	// loadPerTx is set: a connection's own load table went missing.
	tempTxSQL string
}

// newLayout makes the layout of cols, the configured columns with their
// types read from the table (sig sums those up).
func (s *Sink) newLayout(cols []column, sig string) *layout {
	l := &layout{cols: cols, sig: sig, sortCol: -1}
	// The binary format when every column has one here: values go in
	// as the bytes they are (no escaping) and PostgreSQL parses less.
	l.binary = !s.insert
	for _, c := range cols {
		l.binary = l.binary && c.bin != binNone
	}
	for i, c := range cols {
		if !s.insert && len(s.key) == 1 && c.name == s.key[0] && c.kind == kindInt {
			l.sortCol = i
		}
	}
	tbl := s.table.Sanitize()
	format := ""
	if l.binary {
		format = " WITH (FORMAT binary)"
	}
	names := s.colList("")
	l.copySQL = "COPY " + tbl + " (" + names + ") FROM STDIN" + format
	// The load table has the configured columns only and no constraints:
	// CREATE TABLE AS rather than LIKE, so that a NOT NULL column left to
	// its default in the real table does not refuse the rows.
	// It is made once per connection (write.go's loadTable), outside any
	// transaction so that a rollback keeps it, and each commit empties it:
	// a CREATE and DROP per write cost PostgreSQL catalog rows, a file
	// made and unlinked, and invalidations, every write.
	shape := " AS SELECT " + names + " FROM " + tbl + " WITH NO DATA"
	// Its name is the shape's, the columns' types included: behind a
	// pooler in transaction mode a server session may hold the load table
	// of another stage writing another table through the same database,
	// and one name for all had a write COPY into that stage's columns (a
	// column missing, or its binary values read as another type's); and
	// a connection's load table made before a column changed type has
	// the old type, which the new layout's values are not encoded for.
	l.loadName = loadTableName(shape + "\x00" + sig)
	l.tempSQL = "CREATE TEMP TABLE " + l.loadName + " ON COMMIT DELETE ROWS" + shape
	// The fallback (write.go): made in each write, dropping the table a
	// connection may still hold from before.
	l.tempTxSQL = "BEGIN; DROP TABLE IF EXISTS pg_temp." + l.loadName + "; CREATE TEMP TABLE " + l.loadName + " ON COMMIT DROP" + shape
	l.copyTempSQL = "COPY " + l.loadName + " (" + names + ") FROM STDIN" + format
	into := "INSERT INTO " + tbl
	if s.update {
		into += " AS " + updateAlias // version's WHERE names the stored row
	}
	l.mergeSQL = into + " (" + names + ") SELECT " + names + " FROM " + l.loadName + s.onConflict() + "; COMMIT"
	args := make([]string, len(cols))
	casts := make([]string, len(cols))
	for i, c := range cols {
		args[i] = fmt.Sprintf("$%d::text[]", i+1)
		casts[i] = "u." + quoteIdent(c.name) + "::" + c.cast
	}
	l.insSQL = into + " (" + names + ") SELECT " + strings.Join(casts, ", ") +
		" FROM unnest(" + strings.Join(args, ", ") + ") AS u(" + names + ")" + s.onConflict()
	return l
}

// errReshaped ends a write whose batch was encoded for column types the
// table no longer has: Handle encodes what is left of the batch again,
// for the new layout, and writes it.
var errReshaped = errors.New("the table's columns changed type since the batch was encoded")

// shapeSuspect reports whether err may come from a batch encoded for a
// column type the table no longer has (a column altered to another type,
// or dropped and added again with one), as PostgreSQL 15 answers it. In
// COPY's binary format a field of the old type's size is read by the new
// type's receive function: too short for it, "insufficient data left in
// message" (08P01, which is otherwise the connection's and retried); of
// another length, "incorrect binary data format" (22P03); an integer's
// bytes read as text hold a NUL (22021); text read as jsonb, "unsupported
// jsonb version number" (XX000, retried as an internal error); jsonb read
// as json, invalid JSON (22P02). Under method insert, a value cast to the
// old type: out of its range though in the new one's (22003: integer
// widened to bigint), or of a type the new one takes by no assignment
// cast (text to bigint, bigint to boolean), "column is of type ... but
// expression is of type ..." (42804, which otherwise fails the batch), as
// under conflict: update from its load table of the old types. Any data
// exception (class 22) is taken: each of these is also what some row's
// own data, or the server, can cause, and the table is read, once for a
// batch, to tell them apart (reshaped).
func shapeSuspect(err error) bool {
	code := sqlState(err)
	switch {
	case strings.HasPrefix(code, "22"):
		return true
	case code == "08P01", code == "XX000", code == "42804":
		return true
	}
	return false
}

// localRecheck is how long a read of the table's column types serves a
// batch whose only reason to read them is a value the sink refused
// itself (handle): such values cost one read a second, not one a batch
// (reads are made one at a time, under reshapeMu). A write PostgreSQL
// fails as a changed type would make it fail always reads.
const localRecheck = time.Second

// reshaped reports whether the table's columns now have other types than
// those lay was made for: it reads the table's description and, when it
// differs, makes the new layout the sink's. The workers that ask take
// turns, and one that asks after another made a new layout takes that
// one without reading. With local (the reason is only a value the sink
// refused itself), it does not read when the table was read less than
// localRecheck ago, and reports false. A table or configured column that
// is missing changes nothing here (a write meets that as 42P01 or 42703,
// an outage). The new types are taken as the table has them, also where
// `types` gives another, which Start would have refused: the rows
// follow the table, and the log says what changed. It waits on the
// database (and on other workers' reads) without a run slot
// (stage.Blocking).
func (s *Sink) reshaped(ctx context.Context, lay *layout, local bool) (changed bool) {
	stage.Blocking(ctx, func() { changed = s.readShape(ctx, lay, local) })
	return changed
}

// readShape is reshaped's work, holding a run slot or not.
func (s *Sink) readShape(ctx context.Context, lay *layout, local bool) bool {
	s.reshapeMu.Lock()
	defer s.reshapeMu.Unlock()
	if s.lay.Load() != lay {
		return true // another worker read the new description
	}
	at := s.clock()
	if local && !s.shapeReadAt.IsZero() && at.Sub(s.shapeReadAt) < localRecheck {
		return false
	}
	s.shapeReads.Add(1)
	ctx, done := s.writeContext(ctx)
	defer func() { _ = done(nil) }()
	tbl := s.table.Sanitize()
	oid, _, err := relation(ctx, s.pool, tbl)
	if err != nil || oid == nil {
		return false
	}
	have, err := s.readColumns(ctx, s.pool, *oid)
	if err != nil {
		return false
	}
	s.shapeReadAt = at
	cols, sig, missing := s.typedColumns(have)
	if missing != "" || sig == lay.sig {
		return false
	}
	var was, now []string
	for i, c := range cols {
		if c.full != lay.cols[i].full || c.cast != lay.cols[i].cast {
			was = append(was, fmt.Sprintf("%q %s", c.name, lay.cols[i].full))
			now = append(now, fmt.Sprintf("%q %s", c.name, c.full))
		}
	}
	s.lay.Store(s.newLayout(cols, sig))
	s.log.Warn("a column of the table changed type while the stage ran; writing the rows for the new type from now on",
		zap.String("stage", s.name), zap.String("table", tbl), zap.Strings("was", was), zap.Strings("now", now))
	return true
}

// clock returns the time by s.now (tests set it), or time.Now.
func (s *Sink) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// unfinished returns the events of batch not finished yet.
func unfinished(batch []*stage.Event) []*stage.Event {
	var left []*stage.Event
	for _, ev := range batch {
		if !ev.Finished() {
			left = append(left, ev)
		}
	}
	return left
}
