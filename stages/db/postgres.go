package db

// This file holds db.postgres: its spec, constructor and the Sink's life
// (start, close).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// Kind is the name db.postgres is registered under.
const Kind = "db.postgres"

// ErrNoDSN is wrapped by the constructor's error when dsn is empty.
var ErrNoDSN = errors.New("dsn is empty: give the PostgreSQL URL or key=value DSN to connect to")

// Defaults of the fields whose zero value is not the default.
const (
	DefaultMaxConns   = 4
	DefaultBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// maxMaxConns bounds max_conns: PostgreSQL's own max_connections is
	// rarely above a few thousand.
	maxMaxConns = 1 << 16
	// connIdle: with auto workers, a connection unused this long is closed,
	// so that the open connections follow a shrinking pool.
	connIdle = 30 * time.Second
	// defaultConnectTimeout bounds one connection attempt when the DSN sets
	// no connect_timeout, so a black-holed host is retried rather than hung on.
	defaultConnectTimeout = 10 * time.Second
)

// Fields is the configuration spec of db.postgres.
func Fields() []stage.Field {
	return []stage.Field{
		{Name: "dsn", Type: stage.String, Secret: true, Doc: "PostgreSQL URL or key=value DSN; required by the library (pipectl run fills an empty one with a local PostgreSQL of its own)"},
		{Name: "table", Type: stage.String, Required: true, Doc: "table to write to: name or schema.name (unquoted identifiers, folded to lower case)"},
		{Name: "create", Type: stage.Bool, Default: false, Doc: "create the table if missing; an existing table must have the configured columns and types"},
		{Name: "columns", Type: stage.StringMap, Required: true, Doc: "column: field path (a.b.c) of the value to store; $ is the whole record"},
		{Name: "types", Type: stage.StringMap, Doc: "column: SQL type, for create and checked on an existing table; default jsonb for a $ column, bigint for the version column, text otherwise"},
		{Name: "key", Type: stage.StringList, Doc: "primary key columns for create; the conflict target of conflict: ignore and update"},
		{Name: "conflict", Type: stage.String, Default: "error", Enum: []string{"error", "ignore", "update"}, Doc: "a row whose key is already stored: error (nacked), ignore (acked, idempotent resends) or update (its non-key columns are overwritten; within a write only the last row of a key is written, the earlier ones are acked as superseded; a key with a NULL part supersedes none, as NULLs are distinct in a unique index unless it is NULLS NOT DISTINCT; needs key)"},
		{Name: "version", Type: stage.String, Doc: "with conflict: update, an integer column holding the row's version: a stored row is overwritten only by one whose version is at least its own, so a resent old update is harmless; unset: the last writer wins"},
		{Name: "method", Type: stage.String, Default: "copy", Enum: []string{"copy", "insert"}, Doc: "copy (COPY FROM STDIN, fastest) or insert (one multi-row INSERT per batch)"},
		{Name: "max_conns", Type: stage.Int, Default: 0, Range: stage.Between(0, maxMaxConns), Doc: "connections in the pool at most; 0: they follow the workers, one per worker so that no worker waits for one (auto workers: connections open as workers need them, up to the pool controller's ceiling, and close after 30 s unused); set, it is also the most workers an auto pool gets"},
		{Name: "retry", Type: stage.Object, Doc: "retries of a batch while PostgreSQL is unreachable, asks for one, or cannot write it for a reason no record is to blame for (read-only, out of disk, a grant or a table missing)", Fields: []stage.Field{
			{Name: "max", Type: stage.Int, Default: 0, Range: stage.AtLeast(0), Doc: "retries of one batch at most, then its events are failed; 0: retry until the stage stops"},
			{Name: "backoff", Type: stage.Duration, Default: DefaultBackoff, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "wait before the first retry; doubled at each one, with jitter"},
			{Name: "max_backoff", Type: stage.Duration, Default: DefaultMaxBackoff, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "longest wait between retries"},
		}},
		{Name: "on_start", Type: stage.String, Default: "retry", Enum: []string{"retry", "fail"}, Doc: "PostgreSQL unreachable at start: retry (with backoff, logging each attempt) or fail"},
		{Name: "statement_timeout", Type: stage.Duration, Doc: "PostgreSQL statement_timeout of the stage's sessions; a timed-out batch is retried"},
		writeTimeoutField(),
	}
}

// Register registers db.postgres in r.
func Register(r *stage.Registry) error {
	return r.Register(stage.Kind{
		Name: Kind,
		Doc: "PostgreSQL sink: stores each batch with COPY (or a multi-row INSERT), acks events once committed, " +
			"retries while the database is away and nacks only the rows PostgreSQL refuses",
		Fields:      Fields(),
		Terminal:    true,
		Redelivered: redelivered,
		NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
			return New(cfg, env)
		},
	})
}

// column is one configured column.
type column struct {
	name  string // folded to lower case, unquoted
	path  string // field path; "$" is the payload
	typ   string // SQL type from `types`; "" when defaulted
	ctype string // the type to create it with
	// Filled in by Start from the table as it is.
	kind valueKind
	bin  binKind // how COPY's binary format writes it; binNone: it has no binary form here
	cast string  // the column's type by its qualified name (no length), for the casts of the insert method
	full string  // the column's type as PostgreSQL writes it (format_type), for messages
}

// Sink is the db.postgres handler. Its methods Start, Handle and Close are
// called by the stage runtime: Start once, Handle from the stage's workers
// concurrently, Close once after the workers have returned.
type Sink struct {
	name       string
	log        *zap.Logger
	maxWorkers int    // max_conns when set: workers past it would wait for a connection
	dsn        string // redacted before it is shown anywhere
	secret     string // the DSN's password, scrubbed from errors
	poolCfg    *pgxpool.Config

	table      pgx.Identifier
	create     bool
	cols       []column
	key        []string
	ignore     bool // conflict: ignore
	update     bool // conflict: update (upsert.go)
	version    int  // the version column's index; -1: none
	isKey      []bool
	nullsEqual bool // the key's index is NULLS NOT DISTINCT: a NULL key part equals another (upsert.go; set by Start)
	insert     bool // method: insert
	retryMax   int
	backoff    time.Duration
	maxBackoff time.Duration
	startFail  bool // on_start: fail
	// writeTimeout bounds one write (timeouts.go).
	writeTimeout time.Duration
	// probeAfter: a write unanswered this long has the server probed
	// (probe.go); probing: a probe of the stage's runs; probeFailed: the
	// latest probe's failure was reported, and no answer since; the
	// probes' ends.
	probeAfter                   time.Duration
	probing, probeFailed         atomic.Bool
	probesFailed, probesAnswered atomic.Uint64

	// Set by Start.
	pool *pgxpool.Pool
	// lay is how the table's columns are written (reshape.go): set by
	// Start, and again when a write finds a column's type changed,
	// under reshapeMu.
	lay       atomic.Pointer[layout]
	reshapeMu sync.Mutex
	// shapeReadAt is when reshaped last read the table's column types
	// (under reshapeMu); shapeReads counts those reads.
	shapeReadAt time.Time
	shapeReads  atomic.Uint64
	// now, set by tests, is the clock reshaped goes by; nil: time.Now.
	now func() time.Time
	// loadPerTx: a connection's own load table went missing, and each
	// write makes one in its transaction (layout.tempTxSQL).
	loadPerTx atomic.Bool

	bufs   sync.Pool // *rows, reused across batches
	dedups sync.Pool // *dedup, for the writes of one batch under conflict: update
	groups groups    // method copy: batches waiting for a COPY (group.go)
	sorts  sync.Pool // *groupData, reused across groups

	idemWrites atomic.Uint64 // writes committed through the idempotent path
	// castSearches counts the transactions castColumns looked for
	// refused rows' columns in, castRows the rows it looked at.
	castSearches, castRows atomic.Uint64
	// fenceRefused: PostgreSQL refused to end a backend (fence), said once.
	fenceRefused atomic.Bool

	// socks are the connections the dialer made, which Close ends
	// (timeouts.go).
	socks     sockets
	closeOnce sync.Once
}

// MaxWorkers is the most workers the stage can use: max_conns when it is
// set (more would wait for a connection), else 0 (no limit). The pool
// controller grows an auto pool no further (see stage.Kind).
func (s *Sink) MaxWorkers() int { return s.maxWorkers }

// The Sink is a Handler with these of the optional methods stage.Kind
// lists.
var _ interface {
	stage.Handler
	Start(context.Context) error
	Close() error
	FieldsRead() (paths []string, all bool)
	MaxWorkers() int
} = (*Sink)(nil)

// FieldsRead returns the field paths of the columns (see stage.Kind),
// so that the decoder before the sink decodes only those.
func (s *Sink) FieldsRead() ([]string, bool) {
	var ps []string
	for _, c := range s.cols {
		if c.path != "$" {
			ps = append(ps, c.path)
		}
	}
	return ps, false
}

// New returns a db.postgres handler for cfg. It checks the configuration
// and parses the DSN but does not connect: Start does. Errors about one
// field are *stage.FieldError.
func New(cfg stage.Config, env stage.Env) (*Sink, error) {
	log := env.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{name: env.Stage, log: log, create: cfg.Bool("create")}

	s.dsn = cfg.String("dsn")
	if strings.TrimSpace(s.dsn) == "" {
		return nil, &stage.FieldError{Field: "dsn", Err: ErrNoDSN}
	}
	pc, err := pgxpool.ParseConfig(s.dsn)
	if err != nil {
		return nil, &stage.FieldError{Field: "dsn", Err: fmt.Errorf("bad DSN %s: %s", stage.Redact(s.dsn), parseProblem(s.dsn, err))}
	}
	s.secret = pc.ConnConfig.Password
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if d := cfg.Duration("statement_timeout"); d > 0 {
		pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(d.Milliseconds())
	}
	if err := s.setTimeouts(cfg, pc); err != nil {
		return nil, err
	}
	// max_conns follows the workers unless it is set: one connection per
	// worker, so that no worker waits for one. An auto pool (workers
	// unset) may grow to the pool controller's ceiling, so the connection
	// pool allows that many; connections are opened as workers first need
	// them and closed after connIdle unused, so the open ones follow the
	// workers the controller keeps. A set max_conns is also the most
	// workers the controller gives the stage (MaxWorkers).
	maxConns := DefaultMaxConns
	switch {
	case env.Settings.AutoWorkers:
		maxConns = env.MaxWorkers
		pc.MaxConnIdleTime = connIdle
	case env.Settings.Workers > 0:
		maxConns = env.Settings.Workers
	}
	if n := cfg.Int("max_conns"); n > 0 {
		maxConns = n
		s.maxWorkers = n
	}
	pc.MaxConns = int32(min(maxConns, maxMaxConns))
	pc.MinConns = 0
	pc.AfterConnect = s.noteServerStart
	s.poolCfg = pc
	s.groups = groups{maxLanes: int(pc.MaxConns), maxBytes: groupBytes, laneBytes: groupBytes}

	if s.table, err = parseTable(cfg.String("table")); err != nil {
		return nil, &stage.FieldError{Field: "table", Err: err}
	}
	if len(s.table) == 1 && strings.HasPrefix(s.table[0], loadTable) {
		// Once a connection has made its load table, the bare name means
		// that one (pg_temp comes first), and rows went there.
		return nil, &stage.FieldError{Field: "table", Err: fmt.Errorf("%s begins the name of the sink's own temporary tables, which could hide the table: give its schema (public.%s) or another name", loadTable, s.table[0])}
	}
	if err := s.parseColumns(cfg); err != nil {
		return nil, err
	}

	// Enum and Range in Fields have checked the values.
	s.ignore = cfg.String("conflict") == "ignore"
	s.update = cfg.String("conflict") == "update"
	if err := s.parseVersion(cfg); err != nil {
		return nil, err
	}
	s.insert = cfg.String("method") == "insert"
	s.startFail = cfg.String("on_start") == "fail"

	rc := cfg.Object("retry")
	s.retryMax = rc.Int("max")
	s.backoff, s.maxBackoff = rc.Duration("backoff"), rc.Duration("max_backoff")
	if s.maxBackoff < s.backoff {
		return nil, &stage.FieldError{Field: "retry.max_backoff", Err: fmt.Errorf("%s is less than retry.backoff %s", s.maxBackoff, s.backoff)}
	}
	s.bufs.New = func() any { return &rows{res: make(chan outcome, 1)} }
	s.sorts.New = func() any { return new(groupData) }
	s.dedups.New = func() any { return new(dedup) }
	return s, nil
}

func (s *Sink) parseColumns(cfg stage.Config) error {
	pairs := cfg.Pairs("columns")
	if len(pairs) == 0 {
		return &stage.FieldError{Field: "columns", Err: errors.New("no columns: map each column to a field path, e.g. {id: id, body: $}")}
	}
	index := map[string]int{}
	for _, p := range pairs {
		name, err := parseIdent(p[0])
		if err != nil {
			return &stage.FieldError{Field: "columns." + p[0], Err: err}
		}
		if _, dup := index[name]; dup {
			return &stage.FieldError{Field: "columns." + p[0], Err: fmt.Errorf("column %q given twice", name)}
		}
		path := strings.TrimSpace(p[1])
		if path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
			return &stage.FieldError{Field: "columns." + p[0], Err: fmt.Errorf("bad field path %q: want $ or names joined by dots, e.g. user.id", p[1])}
		}
		index[name] = len(s.cols)
		c := column{name: name, path: path, ctype: "text"}
		if path == "$" {
			c.ctype = "jsonb"
		}
		s.cols = append(s.cols, c)
	}
	for _, p := range cfg.Pairs("types") {
		name, err := parseIdent(p[0])
		if err != nil {
			return &stage.FieldError{Field: "types." + p[0], Err: err}
		}
		i, ok := index[name]
		if !ok {
			return &stage.FieldError{Field: "types." + p[0], Err: fmt.Errorf("column %q is not in columns", name)}
		}
		t, err := parseType(p[1])
		if err != nil {
			return &stage.FieldError{Field: "types." + p[0], Err: err}
		}
		s.cols[i].typ, s.cols[i].ctype = t, t
	}
	seen := map[string]bool{}
	for i, k := range cfg.Strings("key") {
		name, err := parseIdent(k)
		field := fmt.Sprintf("key.%d", i)
		if err != nil {
			return &stage.FieldError{Field: field, Err: err}
		}
		if _, ok := index[name]; !ok {
			return &stage.FieldError{Field: field, Err: fmt.Errorf("column %q is not in columns", name)}
		}
		if seen[name] {
			return &stage.FieldError{Field: field, Err: fmt.Errorf("column %q given twice", name)}
		}
		seen[name] = true
		s.key = append(s.key, name)
	}
	return nil
}

// Close closes the connection pool, without waiting for a server that does
// not answer (sockets). It may be called more than once.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		if s.pool == nil {
			return
		}
		// The idle sessions are told goodbye (Terminate), as the pool's
		// Close would; then the sockets left open, which pgx is closing
		// in the background after a cut write or which are being
		// connected, are ended, so that the pool's Close does not wait
		// for a server that may not answer (sockets).
		// Bounded: a Terminate to a server that stopped reading waits only
		// as long as the socket's send buffer is full.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for _, c := range s.pool.AcquireAllIdle(ctx) {
			_ = c.Conn().Close(ctx)
			c.Release()
		}
		s.socks.close()
		s.pool.Close()
	})
	return nil
}

// Start connects the pool, checks (or with create, makes) the table and
// prepares the statements. While PostgreSQL cannot be reached it retries
// with backoff under on_start: retry, logging each attempt and reporting
// it to the stage's health (stage.ReportAttempt), until it can, retry.max
// is reached or ctx ends; under on_start: fail it returns the error at
// once.
func (s *Sink) Start(ctx context.Context) error {
	if s.pool != nil {
		return errors.New("db.postgres: started twice")
	}
	pool, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), s.poolCfg)
	if err != nil {
		return fmt.Errorf("connection pool for %s: %w", stage.Redact(s.dsn), s.scrub(err))
	}
	for attempt := 0; ; attempt++ {
		err = s.setup(ctx, pool)
		if err == nil {
			stage.ReportAttempt(ctx, nil)
			s.pool = pool
			s.log.Info("connected to PostgreSQL", zap.String("stage", s.name), zap.String("dsn", stage.Redact(s.dsn)),
				zap.String("table", s.table.Sanitize()), zap.Int32("max_conns", s.poolCfg.MaxConns))
			return nil
		}
		if ctx.Err() != nil || !retryable(err) || s.startFail || (s.retryMax > 0 && attempt >= s.retryMax) {
			break
		}
		// Each failed attempt is news for the stage's health: down once
		// they go on for seconds, not ok while the store cannot write.
		stage.ReportAttempt(ctx, fmt.Errorf("PostgreSQL at %s not reachable yet, retrying: %w", stage.Redact(s.dsn), s.scrub(err)))
		d := s.delay(attempt)
		s.log.Warn("PostgreSQL is not reachable yet; retrying (on_start: retry)",
			zap.String("stage", s.name), zap.String("dsn", stage.Redact(s.dsn)), zap.Int("attempt", attempt+1),
			zap.Duration("backoff", d), zap.Error(s.scrub(err)))
		if !sleep(ctx, d) {
			break
		}
	}
	// As Close does: a write of setup's cut short on a silent network
	// would hold the pool's Close for pgx's 15 s background close. A
	// later Start dials afresh.
	s.socks.close()
	pool.Close()
	s.socks.init()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("PostgreSQL at %s not reachable before start was cancelled: %w (last error: %v)",
			stage.Redact(s.dsn), ctx.Err(), err)
	case !retryable(err):
		return err
	case s.startFail:
		return fmt.Errorf("PostgreSQL at %s is not reachable (on_start: fail): %w", stage.Redact(s.dsn), err)
	default:
		return fmt.Errorf("PostgreSQL at %s still not reachable after %d retries: %w", stage.Redact(s.dsn), s.retryMax, err)
	}
}

// scrub hides the DSN's password should it appear in err's text.
func (s *Sink) scrub(err error) error {
	if err == nil || s.secret == "" || !strings.Contains(err.Error(), s.secret) {
		return err
	}
	return &scrubbed{msg: strings.ReplaceAll(err.Error(), s.secret, "xxxxx"), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// retryable reports whether Start may retry after err: the server is
// unreachable or busy, not the configuration wrong. A permission refused
// (42501), a relation missing (42P01) or a column missing (42703) is the
// configuration's at start (a role never granted the schema or the table,
// a schema in table that does not exist, a column in columns the table
// lacks), and fails Start at once so that it shows; once the stage runs,
// a right revoked or a table or column dropped under it is an outage its
// operator clears, and writes retry it (transient).
func retryable(err error) bool {
	var se *shapeError
	if errors.As(err, &se) {
		return false
	}
	switch sqlState(err) {
	case "42501", "42P01", "42703":
		return false
	}
	return transient(err)
}
