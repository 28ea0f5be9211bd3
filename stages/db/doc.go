// Package db holds the database stages: db.postgres, a PostgreSQL sink.
//
// A db.postgres stage stores each batch its workers take (the common
// `batch: {max, linger}` knob sizes them) and acknowledges an event only
// once the transaction holding its row has committed: an ack means durable.
// Every configured column takes one field path of the event (`$` is the
// whole record, stored as jsonb by default); a missing field is NULL.
//
//	store:
//	  kind: db.postgres
//	  dsn: ${DATABASE_URL}
//	  table: events
//	  create: true
//	  columns: {id: id, body: $}
//	  types: {id: bigint}
//	  key: [id]
//	  conflict: ignore
//	  method: copy
//	  batch: {max: 2000, linger: 2ms}
//
// # Writing
//
// With method: copy a batch is written by a COPY FROM STDIN straight into
// the table; COPY outside a transaction block is its own transaction,
// committed when it returns. A batch that finds no COPY of the stage
// running starts one at once; batches that come while one runs wait, and
// the next COPY writes them all (group commit, up to 4 MiB of rows). Into
// a table with an index that is one COPY at a time while it keeps up,
// more beside it (up to max_conns) only when a whole group is waiting:
// PostgreSQL pays much of a COPY per statement and per concurrent writer
// (the index's pages), so fewer, larger COPYs cost it less per row. Into
// a table without an index a waiting batch starts a COPY beside the
// running ones at once (up to max_conns): there a concurrent COPY costs
// PostgreSQL little, and lets it use another core. Under conflict: ignore, a COPY that meets a key already
// stored (SQLSTATE 23505, a resend) is written again through the
// idempotent path: in one transaction, COPY into a temporary table (the
// load table, made once per connection, ON COMMIT DELETE ROWS, and named
// _seda_load_ and a digest of its columns, their types and table, so that a server
// session a pooler shares never offers one stage another's), then
// INSERT INTO the table SELECT ... ON CONFLICT (key) DO NOTHING. Resends
// are rare, so the common path stays the fast COPY. Should a connection's
// load table go missing, or be there already when the connection makes
// it (a pooler in transaction mode runs a connection's statements in
// other clients' server sessions), that write and every later one make
// the load table in their own transaction instead. With method: insert a
// batch is one INSERT ... SELECT FROM unnest($1::text[], ...), with ON
// CONFLICT (key) DO NOTHING under conflict: ignore.
//
// # Upserts
//
// Under conflict: update (which needs key) a row whose key is stored is
// overwritten: its non-key columns take the incoming row's. With method
// copy every write goes through the load table (COPY into a temporary
// table, then INSERT INTO the table SELECT ... ON CONFLICT (key) DO UPDATE
// SET ... = EXCLUDED....), with method insert the INSERT carries the same
// clause. PostgreSQL refuses to update one row twice in a statement, so a
// write holds one row per key: of a key's rows in a batch (or in a group
// of batches, in the order they came) the last is written, and the earlier
// ones are superseded: not written, and finished with the write's verdict
// (acked once it commits). A key with a NULL part (a unique index on
// nullable columns) is a key of its own: PostgreSQL's unique indexes take
// NULLs as distinct, so ON CONFLICT never fires for it, and each such row
// is written, inserted beside the others whatever its version; under an
// index that is NULLS NOT DISTINCT (PostgreSQL 15) NULLs are equal, and
// such keys supersede and are overwritten like others. With version (an
// integer column, of a field: the whole record, $, is refused as the
// stage is built; create makes it bigint when types gives it no type,
// as versions compare as integers) the stored row is overwritten only by a row whose
// version is at least its own (DO UPDATE ... WHERE stored.version IS NULL
// OR stored.version <= EXCLUDED.version), and within a write the highest
// version wins, so a resent old update is harmless under at-least-once
// delivery; without it the last writer wins, and the order of a key's
// writes is the stage's: with shard_by on the key, a key's updates are
// written one batch at a time, in the order read (see docs/DESIGN.md,
// shard_by). shard_by knows a key by its text, with an integer's written
// as its digits however it came (7, "7" and 7.0 are one key); it does not
// know the column's type. Keys PostgreSQL takes as equal but written
// differently (a uuid in upper and in lower case, citext, char(n) with
// and without its trailing blanks) can land on different workers, and
// their updates then race: give such keys one canonical form upstream
// (e.g. lower-case the uuid in a process stage), or a version column.
//
// Values go in COPY's binary format when every column's type has one (the
// bytes as they are, no escaping), as text otherwise and always with
// method insert, which PostgreSQL parses for the column's type; values
// that cannot be an integer, a number or a boolean for such a
// column, and an integer out of its column's range (`column "n" (field
// n): 32768 is out of range for smallint`, also for one beyond int64),
// are refused before that, and the event is nacked at once with the
// reason. Every database call, and the wait for a COPY, runs inside
// stage.Blocking, so a worker waiting on PostgreSQL gives its run slot to
// another stage's work.
//
// # Failures
//
// A batch that fails because PostgreSQL is unreachable, restarting, or
// asks for a retry (class 08, 57P01, 57P02, 57P03, 40001, 40P01, 55P03,
// 57014), or because it cannot write for a while for a reason no record
// is to blame for, is retried whole with exponential backoff and jitter,
// logging each retry and reporting it to the stage's health (the stage
// shows down while the retries go on), until it commits, retry.max is
// used up or the stage is stopped; then its events are failed by the
// stage runtime, never acknowledged. Those reasons are: the server is
// read-only (25006: a standby after a failover or a demotion), lacks
// resources (class 53: disk full, out of memory, too many connections, a
// configured limit), had a system or I/O error (class 58), an internal
// error or found its data or an index corrupted (class XX, which a
// REINDEX or a repair clears), the role lost its right to write the table
// (42501, but for a row-level security policy's refusal of a row, below),
// the table is missing (42P01: dropped or renamed, until it is made
// again), or a column it writes is (42703: dropped, until it is added
// again). So is a 42P01 or 42703 raised inside a trigger or a function
// the write ran: a partition's child that cron makes late, routed to by
// a trigger (EXECUTE format('INSERT INTO %I ...', 'events_' ||
// NEW.month)), or a postgres_fdw foreign table whose remote table was
// renamed, holds every record until the table exists. A trigger that
// routes each row to a table its content names, one naming a table that
// is not there, holds its batch the same way: the error cannot tell one
// row's missing table from every row's, and a missing table or column is
// the schema's to fix; the stage shows down, naming it, and retry.max
// (when set) bounds the wait, failing the batch's records after it.
//
// A column that changes type while the stage runs (ALTER TABLE ...
// ALTER COLUMN ... TYPE, or DROP COLUMN and ADD COLUMN again with another
// type) is written for its new type. The sink encodes values for the
// types Start read (8 bytes for a bigint in COPY's binary format, a cast
// to the column's type under method insert, the load table's types under
// conflict: update), and PostgreSQL then refuses what it gets: in the
// binary format "insufficient data left in message" (08P01), "incorrect
// binary data format" (22P03), a NUL read as text (22021), "unsupported
// jsonb version number" (XX000); under method insert or an upsert, a
// value out of the old type's range (22003) or "column ... is of type
// bigint but expression is of type text" (42804). Those, and every data
// exception (class 22), have the sink read the table's column types
// again, as does a batch with values the sink refused itself (a number
// past integer's range for a column now bigint), though for those the
// types are read at most once a second: a read less than a second old
// serves them, and such a value may be refused for the type it had up to
// a second before it changed (TestLocalRefusalReadsTypesOncePerSecond).
// A batch's rows failing
// again after a read that found nothing changed read again only once a
// write of them has committed (a column altered while the batch is
// bisected: TestColumnTypeChangedWhileBisecting), before each retry of
// a transient one (08P01, XX000), or when another worker found a change;
// when
// they changed, what is left of the batch is encoded again for the new
// types and written, and a value that does not fit its column's new type
// is refused as any other, naming the column (TestColumnTypeChangedRewritten).
// While a column or the table is missing (42703, 42P01, held as above),
// each retry first reads the types too, so that one added back with
// another type gets rows encoded for it (jsonb added back as text stores
// the record as it came). The stage logs the change. A change the writes
// do not fail on is not seen otherwise: COPY's binary format carries no types, and jsonb altered to text
// stores each value after jsonb's version byte (\x01), bigint altered to
// numeric reads its 8 bytes as a numeric (0.00000); alter such a column
// with the stage stopped, or restart it after.
// Failing the records then would fail records that are not at fault:
// behind a NATS queue each would be dead-lettered once its
// redeliveries were used up, with nothing to replay it. Other errors that
// no row is to blame for (a feature not supported) fail the batch at
// once. A write that gets
// no answer for write_timeout (statement_timeout + 5 s when that is set,
// else 1 min; the wait for a connection included) is such a failure: its
// connection is dropped and it is retried, so a silent network never
// holds a worker. It does not wait that long to be heard of: a write
// that has waited 5 s (half of write_timeout when shorter) has the server
// probed on a new connection (a dial, the login and SELECT 1, within
// 3 s), again 5 s after each probe ends while it waits (every 8 s while
// probes time out), one probe at a time per stage. A
// probe that gets no answer is reported as a failed attempt, so the stage
// reads down (and /readyz answers 503) about 10 s into a silent cut,
// while the write still waits for its write_timeout; a probe the server
// answers, even with an error, is no failure: a write waiting on a lock
// is slow, not out (and after a failed probe, one answered takes its
// failure back: the stage reads degraded, a long call, again). Before a write whose connection broke unanswered is
// retried, its backend is ended (pg_terminate_backend, from another
// connection) and the retry waits until pg_stat_activity no longer lists
// it: its bytes may still be on their way, and would otherwise run after
// the retry and after newer writes, which a stale upsert would overwrite.
// So is the last try's backend when retry.max fails the batch, since its
// client may send the records again, and newer ones after them.
// Only a backend of the sink's database and user, on the server that ran
// the write (its start time, noted as each connection is made), is ended
// or waited for: after a restart a PID may be a new session's. Should
// PostgreSQL refuse to end it or to show it (a role without the right),
// that is logged once and the retry waits write_timeout, then goes on, so
// a delayed write may still run late; so may one cut short by the stage
// stopping (a forced stop does not wait for the fence), or one behind a
// pooler whose PIDs are not the server's. A connection attempt is bounded by the DSN's
// connect_timeout, 10 s when it has none. Close does not wait for a server
// that does not answer: pgx closes the connection of a write cut short (by
// a forced stop or write_timeout) in the background, sending a cancel
// request over a new connection and waiting up to 15 s for the server;
// Close tells the idle connections goodbye, then ends the sockets still
// open (a cancel request already dialed is sent first), so a forced stop
// on a silent network keeps to its deadline.
//
// A batch PostgreSQL refuses because of its data is bisected until the
// refused rows are alone (when the COPY held a group of batches, each
// batch is first written alone): those are nacked with PostgreSQL's
// message, e.g. `ERROR: value too long for type character varying(5)
// (SQLSTATE 22001)`, and the rest are committed. When PostgreSQL names
// the column (COPY's context for a value it cannot read, the column of a
// NOT NULL violation), the reason names it and its field after `record N
// refused: `, as the sink's own refusals do: `record 4 refused: column
// "f4" (field f4): ERROR: "1e-50" is out of range for type real (SQLSTATE
// 22003)`; the value COPY quotes is left
// out. Under method insert, whose casts (and the assignment to the
// column after them) name no column, the sink finds it for a row refused
// alone with a data exception: once the batch is written, it writes each
// of the row's values alone into a temporary table of the columns'
// types, in one transaction for the batch that it rolls back, and names
// the first that fails as the row did (a role that may not make
// temporary tables gets no column named). It looks so for the first 16
// such rows of a batch; the others are refused naming no column, as a
// batch of hundreds of them cost several times its write
// (TestCastSearchOncePerBatch). These refusals are
// bisected: classes 22 (data exception) and 23 (integrity constraint
// violation); class 44 (a row outside the view it is written through,
// which has WITH CHECK OPTION: method insert writes into a view); 54000 (a row too large for an index) and 54001 (a value
// nested too deeply); a PL/pgSQL trigger's error (class P0: RAISE
// EXCEPTION, SELECT INTO STRICT finding no row or several, a failed
// ASSERT); a SQLSTATE of a class PostgreSQL does not define (a trigger's
// own, RAISE ... USING ERRCODE = 'U0001'); 42501 when it is PostgreSQL's
// refusal of a row by a row-level security policy (known by the routine
// that raises it, ExecWithCheckOptions, whatever the server's language,
// or by its English message; any other 42501 is a permission, and is
// retried as above); and, under conflict:
// update, 21000 (two rows of one statement for one stored row). Under conflict: error a duplicate key is
// such a refusal. A write refused for text PostgreSQL cannot store (22021:
// not UTF-8, as a Latin-1 syslog line, or a NUL byte; 22P05: \u0000 in
// jsonb; 22P02 from PostgreSQL's JSON parser, known by its routine: a
// surrogate escape not in a pair in jsonb, as \uD800 alone, which
// process.json lets through and the json type takes) is not bisected
// first: the batch's values are looked at, as the sink writes them, and
// the records holding such text are nacked with the column and
// PostgreSQL's words for it (`column "msg" (field msg): ERROR: invalid
// byte sequence for encoding "UTF8": 0xfc (SQLSTATE 22021)`; for jsonb's
// \u0000 and a lone surrogate PostgreSQL's DETAIL too, `\u0000 cannot be
// converted to text.`, `Unicode low surrogate must follow a high
// surrogate.`) and the others written again, in one write; only when
// none is found is the batch bisected. A record refused so alone in its
// batch is worded the same way. The values are looked at only after such
// a failure, never as a batch is written.
//
// A retry after a commit whose answer was lost can store a row twice
// under conflict: ignore without a key, or nack it as a duplicate under
// conflict: error: delivery is at least once.
//
// # Start
//
// Start connects (max_conns connections at most; unset, they follow the
// stage's workers: one per worker, and with auto workers as many as the
// pool controller's ceiling, opened as workers need them and closed after
// 30 s unused; a set max_conns also caps an auto pool), then with create
// makes the table if it is missing (several sinks may start at once, the
// backs of a split pipeline: whichever makes it, the others go on), and
// checks the table in any case: a table (plain, partitioned or foreign;
// a view, a composite type or a sequence of that name is said to be one,
// except a view with method insert, left to PostgreSQL),
// every column present, a column given a
// type in `types` of exactly that type, a `$` column of a JSON or text
// type, and a unique index on exactly `key`'s columns that ON CONFLICT can
// use (valid, no predicate, not DEFERRABLE under conflict: ignore or
// update; INCLUDE columns may follow). A mismatch is an error naming every
// problem. While PostgreSQL is unreachable or cannot write for a while
// (as under Failures) Start retries (on_start: retry) or fails at once
// (on_start: fail). A permission refused (42501), a relation missing
// (42P01) or a column missing (42703) fails Start at once under either:
// at start it is the configuration's (a role never granted the schema),
// which retrying does not clear. So does a role that may not write the
// columns the stage writes (INSERT on each; SELECT on the key, which ON
// CONFLICT reads, under conflict: ignore; under conflict: update, UPDATE
// on each non-key column and SELECT on each written one) or may not take
// values from the sequence that the table's own default of a column it
// does not write depends on and calls nextval on (a serial column's, or
// DEFAULT nextval('seq'), which records the sequence: USAGE on it, which
// the error gives the GRANT for; an identity column needs none), which
// Start checks, since a table made elsewhere gives it nothing else to try
// them with: found by the writes, they were retried as an outage until
// the grant. Start does not find a sequence no dependency names, and
// those are still found by the writes, refused with 42501 and retried
// until the grant: DEFAULT nextval('seq'::text) (the name is looked up as
// the row is made), a default calling a function that calls nextval, a
// domain's default, and under method insert into a view, the defaults of
// the table under it. So does method copy (but for conflict: update, whose COPY goes
// into its load table) into a table whose row-level security applies to
// the role (enabled, and the role neither its owner, unless FORCE ROW
// LEVEL SECURITY, nor BYPASSRLS): PostgreSQL refuses COPY FROM there
// (0A000), and the error says to set method: insert; the method is not
// switched behind the configuration.
//
// The DSN's password never reaches a log or an error: see stage.Redact.
package db
