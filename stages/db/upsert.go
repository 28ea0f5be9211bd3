package db

// This file holds conflict: update (upserts) and version: choosing, among
// the rows of one key in a write, the one that is written, and the
// statement that overwrites a stored row.
//
// PostgreSQL refuses ON CONFLICT DO UPDATE on one row twice in a statement
// (SQLSTATE 21000), so a write holds at most one row per key: the last of
// the key's rows in the order the batches were taken (a batch's rows in
// the order read, a group's batches in the order they came), or with
// version the last of those with the highest version. The other rows are
// superseded: they are not written, and their events finish with the
// verdict of the write they were part of (acked once it commits), as the
// row that superseded them would have overwritten theirs.
//
// A key with a NULL part is equal to no other: a unique index's NULLs are
// distinct, so ON CONFLICT never fires for it and PostgreSQL stores every
// such row. Its row gets the empty key (addRow), which add passes through,
// so that it neither supersedes nor is superseded, whatever its version.
// Under an index that is NULLS NOT DISTINCT (nullsEqual) NULLs are equal
// there, and the key keeps its bytes, a NULL part equal to another.

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stagedserver/seda/stage"
)

// parseVersion checks conflict: update's needs and version, and marks the
// key columns; the columns and key are parsed.
func (s *Sink) parseVersion(cfg stage.Config) error {
	s.version = -1
	s.isKey = make([]bool, len(s.cols))
	for i, c := range s.cols {
		s.isKey[i] = slices.Contains(s.key, c.name)
	}
	if s.update && len(s.key) == 0 {
		return &stage.FieldError{Field: "conflict", Err: errors.New("update needs key: the columns that name the row to overwrite")}
	}
	v := cfg.String("version")
	if v == "" {
		return nil
	}
	if !s.update {
		return &stage.FieldError{Field: "version", Err: fmt.Errorf("version is for conflict: update (conflict is %s)", cfg.String("conflict"))}
	}
	name, err := parseIdent(v)
	if err != nil {
		return &stage.FieldError{Field: "version", Err: err}
	}
	s.version = slices.IndexFunc(s.cols, func(c column) bool { return c.name == name })
	switch {
	case s.version < 0:
		return &stage.FieldError{Field: "version", Err: fmt.Errorf("column %q is not in columns", name)}
	case s.isKey[s.version]:
		return &stage.FieldError{Field: "version", Err: fmt.Errorf("column %q is in the key: a version changes while the key stays", name)}
	case s.cols[s.version].path == "$":
		// Whatever its type, the record (JSON or text) is no integer:
		// Start or the first write would fail, after lint passed.
		return &stage.FieldError{Field: "version", Err: fmt.Errorf("column %q is the whole record ($), not an integer: version needs a column of an integer field", name)}
	case !integerType(s.cols[s.version].typ):
		// Start would refuse it, but only after create had made the
		// table with it; lint builds the stage and so reports it here.
		return &stage.FieldError{Field: "version", Err: fmt.Errorf("column %q is %s in types: it needs an integer type (smallint, integer or bigint)",
			name, s.cols[s.version].typ)}
	}
	if s.cols[s.version].typ == "" {
		// create's default, text, would pass lint and fail Start: the
		// version is compared as an integer (rows.vers, and <= in SQL).
		s.cols[s.version].ctype = "bigint"
	}
	return nil
}

// notIntegers are PostgreSQL's built-in types that hold no integer, as
// types may name them (lower case, spaces single, without a length or
// precision).
var notIntegers = map[string]bool{
	"text": true, "varchar": true, "character varying": true, "char": true, "character": true, "bpchar": true,
	"name": true, "numeric": true, "decimal": true, "real": true, "float": true, "float4": true, "float8": true,
	"double precision": true, "money": true, "boolean": true, "bool": true, "json": true, "jsonb": true,
	"date": true, "time": true, "timetz": true, "time with time zone": true, "time without time zone": true,
	"timestamp": true, "timestamptz": true, "timestamp with time zone": true, "timestamp without time zone": true,
	"interval": true, "uuid": true, "bytea": true, "inet": true, "cidr": true, "macaddr": true, "xml": true,
	"bit": true, "bit varying": true, "varbit": true,
}

// integerType reports whether t, a type from types, may be an integer
// type: "" (none given: Start checks the table's), an array never, a
// built-in type that holds no integer never, and any other name (smallint,
// integer, bigint, serial, or a domain, which only Start can look up)
// may.
func integerType(t string) bool {
	t = strings.ToLower(t)
	if strings.Contains(t, "[") {
		return false
	}
	// Drop a length or precision, wherever it is (timestamp(3) with
	// time zone), and a schema: pg_catalog.text is text.
	for {
		i, j := strings.IndexByte(t, '('), strings.IndexByte(t, ')')
		if i < 0 || j < i {
			break
		}
		t = t[:i] + " " + t[j+1:]
	}
	t = strings.TrimPrefix(strings.Join(strings.Fields(t), " "), "pg_catalog.")
	return !notIntegers[t]
}

// rowRef is one row of a batch.
type rowRef struct {
	r *rows
	i int
}

// dedup picks the rows of a write: one per key. Its map and list are
// reused from write to write.
type dedup struct {
	seen map[string]int // key bytes -> index in win
	win  []rowRef
}

// add takes rows [lo, hi) of r, after the rows added before, keeping per
// key the winner so far: the later row, or with versioned the later of
// those with the highest version. A row with the empty key (a NULL part)
// is always kept.
func (d *dedup) add(r *rows, lo, hi int, versioned bool) {
	if d.seen == nil {
		d.seen = map[string]int{}
	}
	for i := lo; i < hi; i++ {
		k := r.kb[r.koff[i]:r.koff[i+1]]
		if len(k) == 0 { // a NULL key part: a key of its own
			d.win = append(d.win, rowRef{r, i})
			continue
		}
		w, ok := d.seen[unsafe.String(unsafe.SliceData(k), len(k))]
		switch {
		case !ok:
			d.seen[unsafe.String(unsafe.SliceData(k), len(k))] = len(d.win)
			d.win = append(d.win, rowRef{r, i})
		case !versioned || r.vers[i] >= d.win[w].r.vers[d.win[w].i]:
			d.win[w] = rowRef{r, i}
		}
	}
}

// reset drops the rows and keys it held.
func (d *dedup) reset() {
	clear(d.seen)
	clear(d.win)
	d.win = d.win[:0]
}

// parts appends the COPY data of the rows d picked to parts: runs of
// consecutive rows of a batch as one part each.
func (d *dedup) parts(parts [][]byte) [][]byte {
	for k := 0; k < len(d.win); {
		ref, n := d.win[k], 1
		for k+n < len(d.win) && d.win[k+n].r == ref.r && d.win[k+n].i == ref.i+n {
			n++
		}
		parts = append(parts, ref.r.buf[ref.r.off[ref.i]:ref.r.off[ref.i+n]])
		k += n
	}
	return parts
}

// insertArgs returns the arguments of the insert method's statement for
// the rows d picked, one text array per column.
func (d *dedup) insertArgs(ncols int) []any {
	args := make([]any, ncols)
	for c := range ncols {
		col := make([]pgtype.Text, len(d.win))
		for k, ref := range d.win {
			col[k] = ref.r.cols[c][ref.i]
		}
		args[c] = col
	}
	return args
}

// appendKey appends row's key to r.kb: the encoded bytes of the key
// column just written (from mark in r.buf), or with method insert its
// text, each preceded by its length, so that keys compare as the values
// PostgreSQL gets. Called for the key columns in order; a key is never
// empty (a part is at least one byte), which leaves the empty key to a
// key with a NULL part where NULLs are distinct (addRow). The COPY data
// holds a NULL's own mark (\N, or the length -1); a text's length goes in
// plus one, so that a NULL is the varint 0, which no text's begins with
// (any byte begins some varint: 0xff one of 255 or 383).
func (s *Sink) appendKey(r *rows, c int, mark int) {
	var b []byte
	extra := 0
	if s.insert {
		t := r.cols[c][len(r.cols[c])-1]
		if !t.Valid {
			r.kb = append(r.kb, 0) // NULL: the length 0
			return
		}
		b, extra = unsafe.Slice(unsafe.StringData(t.String), len(t.String)), 1
	} else {
		b = r.buf[mark:]
	}
	r.kb = appendLen(r.kb, len(b)+extra)
	r.kb = append(r.kb, b...)
}

// appendLen appends n as a varint.
func appendLen(b []byte, n int) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// noVersion is the version of a row whose version is NULL or not an
// integer: any other wins over it.
const noVersion = math.MinInt64

// doUpdate returns the ON CONFLICT clause of conflict: update: the
// non-key columns are overwritten by the incoming row's, under version
// only when the incoming version is at least the stored one (or nothing
// is stored in it). With every column in the key there is nothing to
// overwrite: DO NOTHING.
func (s *Sink) doUpdate() string {
	var set []string
	for _, c := range s.cols {
		if !slices.Contains(s.key, c.name) {
			q := quoteIdent(c.name)
			set = append(set, q+" = EXCLUDED."+q)
		}
	}
	if len(set) == 0 {
		return " ON CONFLICT (" + s.keyList() + ") DO NOTHING"
	}
	sql := " ON CONFLICT (" + s.keyList() + ") DO UPDATE SET " + strings.Join(set, ", ")
	if s.version >= 0 {
		v := quoteIdent(s.cols[s.version].name)
		sql += " WHERE " + updateAlias + "." + v + " IS NULL OR " + updateAlias + "." + v + " <= EXCLUDED." + v
	}
	return sql
}

// updateAlias names the table in an upsert, for version's WHERE.
const updateAlias = "_seda_t"
