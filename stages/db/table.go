package db

// This file holds the table: the names and types the configuration gives,
// and Start's setup (the table made or checked, the role's rights and row
// security checked, the statements built).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maxIdent is PostgreSQL's identifier length limit (NAMEDATALEN-1).
const maxIdent = 63

// parseIdent checks an unquoted SQL identifier and folds it to lower case,
// as PostgreSQL does with unquoted names, so `table: Events` means the
// table psql calls events.
func parseIdent(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty name")
	}
	if len(s) > maxIdent {
		return "", fmt.Errorf("name %q is longer than %d bytes", s, maxIdent)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') && (i == 0 || c != '$') {
			return "", fmt.Errorf("bad name %q: use letters, digits and _ (not starting with a digit)", s)
		}
	}
	return strings.ToLower(s), nil
}

// parseTable parses "name" or "schema.name".
func parseTable(s string) (pgx.Identifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("bad table %q: want name or schema.name", s)
	}
	id := make(pgx.Identifier, len(parts))
	for i, p := range parts {
		n, err := parseIdent(p)
		if err != nil {
			return nil, fmt.Errorf("bad table %q: %w", s, err)
		}
		id[i] = n
	}
	return id, nil
}

// parseType checks the SQL type of a `types` entry: words, digits and
// spaces, an optional modifier list in parentheses, array brackets, a
// schema qualifier. Nothing that could end a statement or open a comment
// or a quote gets through; PostgreSQL judges the rest at Start.
func parseType(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", errors.New("empty type")
	}
	depth := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '_' || c == ' ' || c == '.' || c == '[' || c == ']' ||
			c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 1:
		default:
			return "", fmt.Errorf("bad type %q: unexpected %q", s, c)
		}
		if depth < 0 || depth > 1 {
			return "", fmt.Errorf("bad type %q: unbalanced parentheses", s)
		}
	}
	if depth != 0 {
		return "", fmt.Errorf("bad type %q: unbalanced parentheses", s)
	}
	return t, nil
}

func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

func (s *Sink) colList(prefix string) string {
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = prefix + quoteIdent(c.name)
	}
	return strings.Join(names, ", ")
}

// setup checks the server is there, makes or checks the table, and
// prepares the statements.
func (s *Sink) setup(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return s.scrub(err)
	}
	want, err := s.normalTypes(ctx, pool)
	if err != nil {
		return err
	}
	tbl := s.table.Sanitize()
	if s.create {
		defs := make([]string, 0, len(s.cols)+1)
		for _, c := range s.cols {
			defs = append(defs, quoteIdent(c.name)+" "+c.ctype)
		}
		if len(s.key) > 0 {
			defs = append(defs, "PRIMARY KEY ("+s.keyList()+")")
		}
		if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+tbl+" ("+strings.Join(defs, ", ")+")"); err != nil {
			// Two processes creating the table at once (the backs of a
			// pipeline split across processes): IF NOT EXISTS does not
			// cover the race. The loser gets 23505 on pg_type's index,
			// 42P07, or 42710 ("type already exists": the winner's
			// commit came between the checks of the name and of the row
			// type). The table is there then, and checkTable checks it;
			// a type of that name made by hand is not a table, and its
			// error is returned.
			if st := sqlState(err); st != "23505" && st != "42P07" && st != "42710" {
				return fmt.Errorf("create table %s: %w", tbl, err)
			}
			_, kind, qerr := relation(ctx, pool, tbl)
			if qerr != nil {
				return fmt.Errorf("create table %s: %w", tbl, s.scrub(qerr))
			}
			if kind != "r" && kind != "p" { // not a plain or partitioned table
				return fmt.Errorf("create table %s: %w", tbl, err)
			}
		}
	}
	lay, err := s.checkTable(ctx, pool, want)
	if err != nil {
		return err
	}
	if err := s.checkPrivileges(ctx, pool, tbl); err != nil {
		return err
	}
	if err := s.checkRowSecurity(ctx, pool, tbl); err != nil {
		return err
	}
	s.lay.Store(lay)
	return nil
}

// relation returns the oid and kind (pg_class.relkind: "r" a table, "p"
// a partitioned one, "c" a composite type, ...) of the relation tbl
// names; a nil oid and "" when there is none.
func relation(ctx context.Context, pool *pgxpool.Pool, tbl string) (oid *uint32, kind string, err error) {
	err = pool.QueryRow(ctx, "SELECT to_regclass($1)::oid, COALESCE((SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)), '')", tbl).Scan(&oid, &kind)
	return oid, kind, err
}

func (s *Sink) keyList() string {
	ks := make([]string, len(s.key))
	for i, k := range s.key {
		ks[i] = quoteIdent(k)
	}
	return strings.Join(ks, ", ")
}

func (s *Sink) onConflict() string {
	switch {
	case s.update:
		return s.doUpdate()
	case !s.ignore:
		return ""
	case len(s.key) == 0:
		return " ON CONFLICT DO NOTHING"
	default:
		return " ON CONFLICT (" + s.keyList() + ") DO NOTHING"
	}
}

// normalTypes returns the `types` entries as PostgreSQL spells them
// (int8 → bigint, varchar(5) → character varying(5)), by making them in a
// temporary table that is rolled back.
func (s *Sink) normalTypes(ctx context.Context, pool *pgxpool.Pool) (map[string]string, error) {
	var defs []string
	for _, c := range s.cols {
		if c.typ != "" {
			defs = append(defs, quoteIdent(c.name)+" "+c.typ)
		}
	}
	if len(defs) == 0 {
		return nil, nil
	}
	want := map[string]string{}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE _seda_shape ("+strings.Join(defs, ", ")+")"); err != nil {
			return fmt.Errorf("types: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
			WHERE attrelid = 'pg_temp._seda_shape'::regclass AND attnum > 0 AND NOT attisdropped`)
		if err != nil {
			return err
		}
		var name, typ string
		_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error {
			want[name] = typ
			return nil
		})
		if err != nil {
			return err
		}
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return nil, s.scrub(err)
	}
	return want, nil
}

var errRollback = errors.New("rollback")

// checkTable reads the table's columns and checks them against the
// configuration: every column present, a typed column of exactly its type,
// a $ column of a JSON or string type, and the key unique. It returns the
// layout the sink writes the table by.
func (s *Sink) checkTable(ctx context.Context, pool *pgxpool.Pool, want map[string]string) (*layout, error) {
	tbl := s.table.Sanitize()
	oid, relkind, err := relation(ctx, pool, tbl)
	if err != nil {
		return nil, s.scrub(err)
	}
	if oid == nil {
		return nil, &shapeError{fmt.Sprintf("table %s does not exist: create it, or set create: true", tbl)}
	}
	// A composite type, view, sequence or index has a pg_class row and
	// columns too, but the sink cannot COPY into it. With method insert a
	// view PostgreSQL can update is left to PostgreSQL.
	if what, ok := notTable[relkind]; ok && !(relkind == "v" && s.insert) {
		hint := ""
		if relkind == "v" {
			hint = "; method: insert can write into a view PostgreSQL can update"
		}
		return nil, &shapeError{fmt.Sprintf("%s is %s, not a table: the sink writes into a table (plain, partitioned or foreign)%s", tbl, what, hint)}
	}
	have, err := s.readColumns(ctx, pool, *oid)
	if err != nil {
		return nil, err
	}

	var problems []string
	cols, sig, _ := s.typedColumns(have)
	for _, c := range s.cols {
		h, ok := have[c.name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("column %q is missing", c.name))
		case c.typ != "" && h.full != want[c.name]:
			problems = append(problems, fmt.Sprintf("column %q is %s, want %s", c.name, h.full, want[c.name]))
		case c.typ == "" && c.path == "$" && h.name != "json" && h.name != "jsonb" && h.category != "S":
			problems = append(problems, fmt.Sprintf("column %q is %s: the whole record ($) needs jsonb, json or a text type", c.name, h.full))
		}
	}
	if v := s.version; v >= 0 && cols[v].kind != kindInt {
		if h, ok := have[s.cols[v].name]; ok {
			problems = append(problems, fmt.Sprintf("version column %q is %s: it needs an integer type (smallint, integer or bigint)", s.cols[v].name, h.full))
		}
	}
	keyCols := len(s.key) > 0
	for _, k := range s.key {
		_, ok := have[k]
		keyCols = keyCols && ok
	}
	if keyCols {
		key := slices.Clone(s.key)
		slices.Sort(key)
		// An index ON CONFLICT (key) can use: unique, on exactly the
		// key's columns (its first indnkeyatts; INCLUDE columns follow),
		// no predicate or expression, valid, and checked at once (not a
		// DEFERRABLE constraint, which ON CONFLICT refuses at every write).
		// nullsEqual: one of those is NULLS NOT DISTINCT (PostgreSQL 15;
		// indnullsnotdistinct, read through to_jsonb so that the query
		// runs where the column is not there): a NULL key part conflicts
		// with another there, where by default NULLs are distinct.
		var usable, deferrable bool
		err := pool.QueryRow(ctx, `SELECT COALESCE(bool_or(i.indimmediate), false), COALESCE(bool_or(NOT i.indimmediate), false),
				COALESCE(bool_or(i.indimmediate AND (to_jsonb(i) ->> 'indnullsnotdistinct')::bool), false)
			FROM pg_index i
			WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
			AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
				WHERE a.attrelid = i.indrelid AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts-1])) = $2::text[]`,
			*oid, key).Scan(&usable, &deferrable, &s.nullsEqual)
		if err != nil {
			return nil, s.scrub(err)
		}
		switch {
		case usable, deferrable && !s.ignore && !s.update: // conflict: error has no ON CONFLICT
		case deferrable:
			problems = append(problems, fmt.Sprintf("the unique constraint on the key (%s) is DEFERRABLE: ON CONFLICT needs one checked at once", strings.Join(s.key, ", ")))
		default:
			problems = append(problems, fmt.Sprintf("no primary key or unique index on the key (%s)", strings.Join(s.key, ", ")))
		}
	}
	if len(problems) > 0 {
		return nil, &shapeError{fmt.Sprintf("table %s does not match the configuration: %s", tbl, strings.Join(problems, "; "))}
	}
	// Into a table without an index a waiting batch starts a further
	// COPY (group.go's laneBytes).
	var indexed bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1)", *oid).Scan(&indexed); err != nil {
		return nil, s.scrub(err)
	}
	s.groups.mu.Lock()
	s.groups.laneBytes = s.groups.maxBytes
	if !indexed {
		s.groups.laneBytes = 1
	}
	s.groups.mu.Unlock()
	return s.newLayout(cols, sig), nil
}

// colType is a column's type as the table has it.
type colType struct {
	full     string // format_type: bigint, character varying(5), a domain's name
	base     string // the type by its qualified name, without a length (column.cast)
	name     string // the base type's name (a domain's underlying type): int8, jsonb
	category string // pg_type.typcategory of that: S for the string types
}

// readColumns returns the types of the columns of the table whose oid is
// oid, by name.
func (s *Sink) readColumns(ctx context.Context, pool *pgxpool.Pool, oid uint32) (map[string]colType, error) {
	have := map[string]colType{}
	// The insert method's cast (base) is the column's type by its
	// qualified name, which carries no length: format_type's "character"
	// or "bit" would be char(1) or bit(1) in a cast, which cuts a value
	// short without an error, where the column's own length check is
	// wanted (COPY's, and the assignment's after the cast).
	rows, err := pool.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
			quote_ident(n.nspname) || '.' || quote_ident(t.typname), b.typname::text, b.typcategory::text
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_namespace n ON n.oid = t.typnamespace
		JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, oid)
	if err != nil {
		return nil, s.scrub(err)
	}
	var name string
	var g colType
	if _, err := pgx.ForEachRow(rows, []any{&name, &g.full, &g.base, &g.name, &g.category}, func() error {
		have[name] = g
		return nil
	}); err != nil {
		return nil, s.scrub(err)
	}
	return have, nil
}

// typedColumns returns the configured columns with the types have gives
// them, and sig, those types summed up; missing names the first column
// have lacks (its kind left as text).
func (s *Sink) typedColumns(have map[string]colType) (cols []column, sig, missing string) {
	cols = slices.Clone(s.cols)
	var b strings.Builder
	for i := range cols {
		c := &cols[i]
		h, ok := have[c.name]
		if !ok && missing == "" {
			missing = c.name
		}
		c.kind, c.cast, c.bin, c.full = kindOf(h.name), h.base, binKindOf(h.name), h.full
		b.WriteString(h.full + "\x00" + h.base + "\x00")
	}
	return cols, b.String(), missing
}

// notTable names the relations (pg_class.relkind) that have columns
// but are not tables a sink can write into.
var notTable = map[string]string{
	"c": "a composite type",
	"v": "a view",
	"m": "a materialized view",
	"S": "a sequence",
	"i": "an index",
	"I": "a partitioned index",
	"t": "a TOAST table",
}

// shapeError reports a table that is missing or does not fit the
// configuration: Start does not retry it.
type shapeError struct{ msg string }

func (e *shapeError) Error() string { return e.msg }

func kindOf(typname string) valueKind {
	switch typname {
	case "int2", "int4", "int8":
		return kindInt
	case "float4", "float8", "numeric":
		return kindFloat
	case "bool":
		return kindBool
	case "json", "jsonb":
		return kindJSON
	}
	return kindText
}

// checkPrivileges fails Start when the role may not run the statements
// the sink sends: INSERT on each written column; with a key, SELECT on
// the key's columns, which ON CONFLICT (key) reads (the idempotent path of
// conflict: ignore, and upserts); under conflict: update, UPDATE on each
// non-key column and SELECT on every written one (DO UPDATE reads the
// stored row and EXCLUDED; version's WHERE compares them). A refusal there
// is the configuration's, and Start fails at once with it (42501, which
// retryable does not retry). Found by the writes instead, it was retried
// as an outage for as long as the stage ran (a permission revoked while
// the stage runs is, so that what it holds waits for the grant), and a
// table made elsewhere (create: false) gave Start nothing else to stumble
// on.
//
// A column the sink does not write gets its default, and a default that
// calls nextval (a serial column's) needs USAGE or UPDATE on its sequence,
// which PostgreSQL checks as the row is made: without it every write was
// refused with 42501 and retried until the grant. Some of those
// sequences are checked too: the ones the table's own default of such a
// column depends on (pg_depend, which PostgreSQL fills for nextval of a
// regclass constant, as serial and DEFAULT nextval('seq') write it) when
// the default calls nextval. Not checked, since no dependency of the
// table's defaults names them: nextval('seq'::text), whose name is looked
// up as the row is made; a function called by the default that calls
// nextval itself; a domain's default (pg_type's, not pg_attrdef's); and a
// view written under method insert, whose base table's defaults fill the
// columns it leaves out. Those are still refused by the writes, with
// 42501, and retried until the grant. An identity column needs no right
// on its sequence (PostgreSQL takes its values without checking), and has
// no default there.
func (s *Sink) checkPrivileges(ctx context.Context, pool *pgxpool.Pool, tbl string) error {
	var ins, upd, sel []string
	for i, c := range s.cols {
		ins = append(ins, c.name)
		key := i < len(s.isKey) && s.isKey[i]
		if s.update && !key {
			upd = append(upd, c.name)
		}
		if s.update || s.ignore && key {
			sel = append(sel, c.name)
		}
	}
	const q = `SELECT
		(SELECT coalesce(array_agg(c), '{}') FROM unnest($2::text[]) AS c WHERE NOT has_column_privilege($1::regclass, c, 'INSERT')),
		(SELECT coalesce(array_agg(c), '{}') FROM unnest($3::text[]) AS c WHERE NOT has_column_privilege($1::regclass, c, 'UPDATE')),
		(SELECT coalesce(array_agg(c), '{}') FROM unnest($4::text[]) AS c WHERE NOT has_column_privilege($1::regclass, c, 'SELECT'))`
	var noIns, noUpd, noSel []string
	if err := pool.QueryRow(ctx, q, tbl, ins, upd, sel).Scan(&noIns, &noUpd, &noSel); err != nil {
		return s.scrub(err)
	}
	// The CASE keeps has_sequence_privilege from the relations that are
	// not sequences (the table, which a default depends on too): the
	// planner may test a condition before the joins that would rule them
	// out, and it fails on one that is not a sequence.
	const seqQ = `SELECT a.attname::text, q.oid::regclass::text, quote_ident(current_user)
		FROM pg_attrdef ad
		JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND NOT a.attisdropped
		JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class q ON q.oid = d.refobjid AND q.relkind = 'S'
		WHERE ad.adrelid = $1::regclass AND a.attname <> ALL($2::text[])
		AND pg_get_expr(ad.adbin, ad.adrelid) LIKE '%nextval(%'
		AND CASE WHEN q.relkind = 'S' THEN NOT has_sequence_privilege(q.oid, 'USAGE, UPDATE') END
		ORDER BY a.attnum, 2`
	var seqs []string
	rows, err := pool.Query(ctx, seqQ, tbl, ins)
	if err != nil {
		return s.scrub(err)
	}
	var col, seq, role string
	if _, err := pgx.ForEachRow(rows, []any{&col, &seq, &role}, func() error {
		seqs = append(seqs, fmt.Sprintf("USAGE on sequence %s, which the default of column %s (not written) takes values from (GRANT USAGE ON SEQUENCE %s TO %s)", seq, col, seq, role))
		return nil
	}); err != nil {
		return s.scrub(err)
	}
	var missing []string
	if len(noIns) > 0 {
		missing = append(missing, "INSERT on "+strings.Join(noIns, ", "))
	}
	if len(noUpd) > 0 {
		missing = append(missing, "UPDATE on "+strings.Join(noUpd, ", ")+" (conflict: update)")
	}
	if len(noSel) > 0 {
		missing = append(missing, "SELECT on "+strings.Join(noSel, ", ")+" (read by ON CONFLICT)")
	}
	missing = append(missing, seqs...)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("table %s: %w", tbl, &pgconn.PgError{Severity: "ERROR", Code: "42501",
		Message: "the role may not write the rows it would write: it lacks " + strings.Join(missing, "; ")})
}

// checkRowSecurity fails Start when the sink would COPY straight into a
// table whose row-level security applies to the role: PostgreSQL refuses
// COPY FROM there (0A000, "COPY FROM not supported with row-level
// security"), so every batch would fail. Only method copy without
// conflict: update sends that COPY (conflict: ignore's first try does
// too); an upsert COPYs into its load table, which has no policies, and
// INSERTs from there, as method insert does, under the table's policies.
// The method is not switched behind the configuration's back: the error
// says what to set.
//
// row_security_active is the test PostgreSQL's COPY itself makes
// (check_enable_rls): the table has row-level security enabled, and the
// role neither bypasses it (a superuser, BYPASSRLS) nor owns the table
// (as a member of its owner too) unless it is FORCE ROW LEVEL SECURITY.
func (s *Sink) checkRowSecurity(ctx context.Context, pool *pgxpool.Pool, tbl string) error {
	if s.insert || s.update {
		return nil
	}
	var active bool
	if err := pool.QueryRow(ctx, "SELECT row_security_active($1::regclass)", tbl).Scan(&active); err != nil {
		return s.scrub(err)
	}
	if !active {
		return nil
	}
	return &shapeError{fmt.Sprintf("table %s has row-level security that applies to the role the stage connects as, "+
		"and PostgreSQL refuses COPY FROM into such a table (0A000): set method: insert, "+
		"whose INSERTs PostgreSQL runs under the table's policies", tbl)}
}
