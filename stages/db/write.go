package db

// This file holds a batch's write: its rows made, stored by COPY or
// INSERT with retries and bisection, and PostgreSQL's errors sorted into
// a row's refusal, an outage, or the end of the batch.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// rows is one batch made ready for PostgreSQL: the events whose values
// converted, in order, and their rows, as COPY text lines (method copy) or
// as one text array per column (method insert). Any contiguous range of
// rows is a contiguous slice of either, so the batch can be bisected
// without copying.
type rows struct {
	evs     []*stage.Event
	buf     []byte          // COPY rows (text lines or binary tuples), row i is buf[off[i]:off[i+1]]
	off     []int           // len(evs)+1 offsets into buf
	cols    [][]pgtype.Text // insert: cols[c][i] is row i's value of column c
	keys    []int64         // with a sort column (Sink.sortCol): row i's key
	kb      []byte          // conflict: update: row i's key is kb[koff[i]:koff[i+1]] (upsert.go)
	koff    []int
	vers    []int64 // with version: row i's version
	scratch []byte
	res     chan outcome // group commit (group.go): what the batch is told while it waits
	lay     *layout      // the layout the rows are encoded for
	bad     []badRow     // Handle: the batch's events whose values did not convert, refused after the write
	// unnamed: method insert, rows PostgreSQL refused naming no column,
	// refused after the write once their column is looked for
	// (castcolumn.go).
	unnamed []unnamed
	// checked: a write of these rows failed as a changed column type
	// might have made it fail, and the table was read and found as lay
	// has it (reshaped); their further failures are looked into again
	// only as attempt says (once a write of them has committed, ...).
	checked bool
}

// copySource is the data of one COPY: the format's header, the rows of
// one or more batches and its trailer, read in turn without copying them
// first. Read fills p across parts, since each Read is sent as one
// message.
//
// pgconn's CopyFrom may return (on a broken connection or a server error)
// while its goroutine is still reading (pgx v5.12.0 waits for it only when
// the COPY ends normally), and the parts' buffers are the next batch's
// once the write returns: close, deferred by every COPY, waits for a Read
// under way and makes every later one return io.EOF.
type copySource struct {
	mu     sync.Mutex
	parts  [][]byte
	i, off int // the next byte is parts[i][off]
}

func (c *copySource) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(p) && c.i < len(c.parts) {
		k := copy(p[n:], c.parts[c.i][c.off:])
		n, c.off = n+k, c.off+k
		if c.off == len(c.parts[c.i]) {
			c.i, c.off = c.i+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// close ends the data: no Read touches the parts after it returns.
func (c *copySource) close() {
	c.mu.Lock()
	c.parts = nil
	c.mu.Unlock()
}

// maxPooledBuf is the largest buffer a *rows keeps in the Sink's pool:
// a group's worth of COPY data (groupBytes). The pool is memory that
// memory_limit does not count, and a buffer kept at the size of the
// largest batch a worker has seen (1 MiB records: 59 MB held) would stay
// so while the stage runs; a larger batch makes its buffers anew.
const maxPooledBuf = groupBytes

// putRows returns r to the pool without what must not stay in it: the
// batch's events (and the read buffers their payloads share), the insert
// method's values, and buffers larger than maxPooledBuf.
func (s *Sink) putRows(r *rows) {
	clear(r.evs[:cap(r.evs)])
	r.evs, r.lay = r.evs[:0], nil
	clear(r.bad)
	r.bad = r.bad[:0]
	clear(r.unnamed)
	r.unnamed = r.unnamed[:0]
	for i := range r.cols {
		clear(r.cols[i][:cap(r.cols[i])])
		r.cols[i] = r.cols[i][:0]
	}
	if cap(r.buf) > maxPooledBuf {
		r.buf = nil
	}
	if cap(r.scratch) > maxPooledBuf {
		r.scratch = nil
	}
	if cap(r.kb) > maxPooledBuf {
		r.kb = nil
	}
	if testPutRows != nil {
		testPutRows(r)
	}
	s.bufs.Put(r)
}

// testPutRows, set by tests, sees each *rows as it goes back to the pool.
var testPutRows func(*rows)

// reset empties r for rows encoded for lay.
func (r *rows) reset(lay *layout, insert bool) {
	// putRows left the events and the insert values empty and cleared.
	r.buf, r.off, r.keys = r.buf[:0], append(r.off[:0], 0), r.keys[:0]
	r.kb, r.koff, r.vers = r.kb[:0], append(r.koff[:0], 0), r.vers[:0]
	r.lay, r.checked = lay, false
	if ncols := len(lay.cols); insert && len(r.cols) != ncols {
		r.cols = make([][]pgtype.Text, ncols)
	}
}

// Handle stores the batch. Each event is finished here: Done(nil) once the
// transaction holding its row has committed; Done(err) when its values do
// not convert, or PostgreSQL refuses its row (the batch is bisected until
// the refused rows are alone; the others are committed). With method copy
// the batch may be written in one COPY together with other workers'
// batches (group.go). While PostgreSQL is unreachable, asks for a retry
// or cannot write for a reason no row is to blame for (class 08, 57P01,
// 40001, 25006 read-only, class 53, the table or a column dropped, ...:
// transient) the part of the batch not yet committed is retried with
// backoff. Handle returns an error, leaving the events not yet finished to
// the stage runtime, when ctx ends (ctx.Err()), when retry.max is used
// up, or when PostgreSQL fails the batch with an error that is neither a
// row's nor transient (a feature not supported). When a write fails
// because a column changed type since the batch was encoded (reshape.go),
// the events not finished yet are encoded again for the new type and
// written.
func (s *Sink) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	if s.pool == nil {
		return errors.New("db.postgres: Handle called before Start")
	}
	for {
		err := s.handle(ctx, batch)
		if !errors.Is(err, errReshaped) {
			return err
		}
		batch = unfinished(batch)
	}
}

// handle encodes batch for the sink's layout and stores it.
//
// An event whose values do not convert for their columns is refused once
// the others are written, and after the table's columns are read again
// (unless its write did, or any worker's did less than localRecheck
// ago): a column may have changed type (errReshaped), as integer to
// bigint, which its value fits, and the event is then encoded again.
// That read is made only for a batch with such values, never on the way
// of a clean batch.
func (s *Sink) handle(ctx context.Context, batch []*stage.Event) error {
	r := s.bufs.Get().(*rows)
	defer s.putRows(r)
	r.reset(s.lay.Load(), s.insert)
	for _, ev := range batch {
		if err := s.addRow(r, ev); err != nil {
			r.bad = append(r.bad, badRow{ev, err})
		}
	}
	var err error
	switch {
	case len(r.evs) == 0:
	case s.insert:
		err = s.store(ctx, r, 0, len(r.evs), false)
	default:
		err = s.write(ctx, r)
	}
	s.refuseUnnamed(ctx, r)
	if errors.Is(err, errReshaped) {
		return err
	}
	if len(r.bad) > 0 && err == nil && !r.checked {
		if s.reshaped(ctx, r.lay, true) {
			return errReshaped
		}
	}
	for _, b := range r.bad {
		b.ev.Done(fmt.Errorf("stage %q: record %d: %w", s.name, b.ev.Seq, stage.WithClass(b.err, stage.ErrInvalid)))
	}
	// The runtime fails the events left with err, naming the stage in
	// it as it does every handler's errors, so it is not named here.
	return err
}

// badRow is an event whose values did not convert for their columns.
type badRow struct {
	ev  *stage.Event
	err error
}

// write stores r through the group commit: r waits for a COPY (leading
// one when its turn comes) and then settles its events by the outcome. A
// row error in a group of several batches may be another batch's, so
// each batch then stores itself alone, bisecting as it goes.
func (s *Sink) write(ctx context.Context, r *rows) error {
	grp := s.groups.join(r)
	for {
		if grp != nil {
			s.lead(ctx, grp)
		}
		var o outcome
		stage.Blocking(ctx, func() { o = s.groups.wait(ctx, r) })
		switch {
		case o.lead != nil:
			grp = o.lead
			continue
		case o.left:
			return o.err
		case o.err != nil && o.shared && rowError(o.err):
			if badTextError(o.err) {
				if found, err := s.refuseBadText(ctx, r, 0, len(r.evs), o.idem); found {
					return err
				}
			}
			return s.store(ctx, r, 0, len(r.evs), o.idem)
		}
		return s.settle(ctx, r, 0, len(r.evs), o.idem, o.err)
	}
}

// lead writes a group of batches in one COPY, through the idempotent path
// when it meets a key already stored under conflict: ignore, and tells
// every batch of the group how it went.
//
// A group's COPY is of one layout, its leader's: a batch encoded for
// another (a column changed type while it waited) is told errReshaped,
// and is encoded again.
func (s *Sink) lead(ctx context.Context, grp []*rows) {
	lay := grp[0].lay
	for i := 1; i < len(grp); i++ {
		if grp[i].lay != lay {
			grp[i].res <- outcome{err: errReshaped}
			grp = slices.Delete(grp, i, i+1)
			i--
		}
	}
	g := s.sorts.Get().(*groupData)
	var d *dedup
	if s.update {
		d = &g.d
	}
	n, parts := g.make(grp, lay.binary, lay.sortCol >= 0, d, s.version >= 0)
	checked := false
	o := outcome{err: s.attempt(ctx, n, lay, &checked, func(cut *backend) error { return s.copy(ctx, lay, parts, false, cut) })}
	if o.err != nil && s.ignore && sqlState(o.err) == "23505" {
		o.idem = true
		o.err = s.attempt(ctx, n, lay, &checked, func(cut *backend) error { return s.copy(ctx, lay, parts, true, cut) })
	}
	g.reset()
	s.sorts.Put(g)
	s.groups.done(grp, o)
}

// addRow converts ev's values and appends its row to r; on error r is as
// it was. A value goes into the row from the bytes it holds: a string
// field (a view of the payload, most often) or the record itself ($) is
// copied once, into the COPY data, escaped in the text format and as it
// is in the binary one.
func (s *Sink) addRow(r *rows, ev *stage.Event) error {
	lay := r.lay
	mark, keyAt := len(r.buf), 0
	kmark, ver, keyNull := len(r.kb), int64(noVersion), false
	if lay.binary {
		r.buf = binary.BigEndian.AppendUint16(r.buf, uint16(len(lay.cols)))
	}
	for i := range lay.cols {
		c := &lay.cols[i]
		v, ok := stage.JSONValue(ev.Payload), true // $: the record, JSON or text as it came
		if c.path != "$" {
			v, ok = ev.Value(c.path)
		}
		null := !ok || v.IsNull()
		if s.update && i == s.version && !null {
			if n, ok := v.AsInt(); ok {
				ver = n
			}
		}
		var err error
		fieldAt := len(r.buf)
		switch {
		case s.insert:
			t := pgtype.Text{}
			if !null {
				if r.scratch, err = appendValue(r.scratch[:0], v, c.kind, c.bin); err == nil {
					t = pgtype.Text{String: string(r.scratch), Valid: true}
				}
			}
			r.cols[i] = append(r.cols[i], t)
		case lay.binary:
			if i == lay.sortCol {
				keyAt = len(r.buf)
			}
			if null {
				r.buf = append(r.buf, 0xff, 0xff, 0xff, 0xff) // length -1: NULL
			} else {
				r.buf, r.scratch, err = appendBinary(r.buf, r.scratch, v, c.bin, c.kind)
			}
		default:
			if i > 0 {
				r.buf = append(r.buf, '\t')
			}
			if i == lay.sortCol {
				keyAt = len(r.buf)
			}
			switch {
			case null:
				r.buf = append(r.buf, '\\', 'N')
			case rawText(v, c.kind):
				r.buf = appendCopy(r.buf, v.Bytes())
			default:
				if r.scratch, err = appendValue(r.scratch[:0], v, c.kind, c.bin); err == nil {
					r.buf = appendCopy(r.buf, r.scratch)
				}
			}
		}
		if err == nil && s.update && s.isKey[i] {
			if i > 0 && !s.insert && !lay.binary {
				fieldAt++ // past the tab
			}
			s.appendKey(r, i, fieldAt)
			keyNull = keyNull || null
		}
		if err != nil {
			r.buf, r.kb = r.buf[:mark], r.kb[:kmark]
			if s.insert {
				for j := range i + 1 {
					r.cols[j] = r.cols[j][:len(r.cols[j])-1]
				}
			}
			return fmt.Errorf("column %q (field %s): %w", c.name, c.path, err)
		}
	}
	if !s.insert && !lay.binary {
		r.buf = append(r.buf, '\n')
	}
	if lay.sortCol >= 0 {
		r.keys = append(r.keys, fieldKey(r.buf[keyAt:], lay.binary))
	}
	if s.update {
		if keyNull && !s.nullsEqual {
			r.kb = r.kb[:kmark] // the empty key: equal to no other (upsert.go)
		}
		r.koff = append(r.koff, len(r.kb))
		if s.version >= 0 {
			r.vers = append(r.vers, ver)
		}
	}
	r.evs = append(r.evs, ev)
	r.off = append(r.off, len(r.buf))
	return nil
}

// rawText reports whether v's bytes are its text form for a column of
// kind k, so that they go into the row as they are.
func rawText(v stage.Value, k valueKind) bool {
	switch v.Type() {
	case stage.ValueString:
		return k == kindText
	case stage.ValueNumber, stage.ValueJSON:
		return k == kindText || k == kindJSON
	}
	return false
}

// store writes rows [lo, hi) of r, committing and acknowledging them, or
// bisecting around rows PostgreSQL refuses. idem selects the idempotent
// path (COPY into a temporary table, then INSERT ... ON CONFLICT DO
// NOTHING), taken when a COPY meets a key already stored under conflict:
// ignore.
func (s *Sink) store(ctx context.Context, r *rows, lo, hi int, idem bool) error {
	var err error
	// Under conflict: update, one row per key (upsert.go).
	var d *dedup
	if s.update {
		pooled := s.dedups.Get().(*dedup)
		defer func() { pooled.reset(); s.dedups.Put(pooled) }()
		if pooled.add(r, lo, hi, s.version >= 0); len(pooled.win) < hi-lo {
			d = pooled // a key twice: the rows d picks
		}
	}
	n := hi - lo
	if d != nil {
		n = len(d.win)
	}
	if s.insert {
		var args []any
		if d != nil {
			args = d.insertArgs(len(s.cols))
		}
		err = s.attempt(ctx, n, r.lay, &r.checked, func(cut *backend) error { return s.insertRows(ctx, r, lo, hi, args, cut) })
	} else {
		var parts [][]byte
		if r.lay.binary {
			parts = append(parts, binaryHeader)
		}
		if d != nil {
			parts = d.parts(parts)
		} else {
			parts = append(parts, r.buf[r.off[lo]:r.off[hi]])
		}
		if r.lay.binary {
			parts = append(parts, binaryTrailer)
		}
		err = s.attempt(ctx, n, r.lay, &r.checked, func(cut *backend) error { return s.copy(ctx, r.lay, parts, idem, cut) })
	}
	return s.settle(ctx, r, lo, hi, idem, err)
}

// settle finishes rows [lo, hi) of r after a write of them ended with err:
// acknowledged when it committed; written again through the idempotent
// path when it met a key already stored under conflict: ignore; bisected
// when PostgreSQL refused a row, the refused ones nacked when alone (for
// text PostgreSQL cannot store, the records holding it are looked for
// first: refuseBadText). Any other error is returned.
func (s *Sink) settle(ctx context.Context, r *rows, lo, hi int, idem bool, err error) error {
	switch {
	case err == nil:
		stage.DoneAll(r.evs[lo:hi], nil) // one clock reading, one lock per connection's run
		return nil
	case s.ignore && !s.insert && !idem && sqlState(err) == "23505":
		return s.store(ctx, r, lo, hi, true)
	case !rowError(err):
		return err
	case hi-lo == 1:
		if badTextError(err) {
			// PostgreSQL's message alone may not say what is wrong nor
			// name the column (jsonb's \u0000 under method insert), and
			// a surrogate's DETAIL may quote the value: the search words
			// it, as it does for a record found in a batch.
			if _, bad := s.badText(r.lay, r.evs[lo], nil); bad != nil {
				err = bad
			}
		}
		name := s.refusedColumn(err)
		if name == "" && s.insert && castable(err) {
			// Its column is looked for with the batch's others, once
			// the batch is written (refuseUnnamed).
			r.unnamed = append(r.unnamed, unnamed{lo, err})
			return nil
		}
		r.evs[lo].Done(s.refusalAt(r.evs[lo], name, err))
		return nil
	case badTextError(err):
		if found, err := s.refuseBadText(ctx, r, lo, hi, idem); found {
			return err
		}
	}
	mid := lo + (hi-lo)/2
	if err := s.store(ctx, r, lo, mid, idem); err != nil {
		return err
	}
	return s.store(ctx, r, mid, hi, idem)
}

// attempt runs write (one write of rows rows), retrying while the error is
// transient. It returns nil once committed, a row error to bisect on, or
// the error that ends the batch.
//
// A write whose connection broke before PostgreSQL answered (write_timeout,
// an I/O error) may still run: its bytes can be delayed on the network and
// reach the backend after the retry has committed, and after the key's
// next update too, which the stale row would overwrite. write sets *cut to
// that backend's PID, and no retry is sent until fence has seen it gone;
// when retry.max ends the batch, its last write's backend is fenced too.
//
// The rows are encoded for lay. When the write fails as a column changed
// to another type would make it fail (shapeSuspect), the table is read,
// and when its columns' types are no longer lay's attempt returns
// errReshaped. *checked notes a read that found the table as lay has it:
// the rows' later failures read it again only after one of their writes
// committed (the column may have changed since: a bisection's halves),
// before each retry of a transient error (08P01, XX000), or when another
// worker has made a new layout; a row refused again and again (a
// bisection's halves that all hold it) costs no read each.
func (s *Sink) attempt(ctx context.Context, rows int, lay *layout, checked *bool, write func(cut *backend) error) error {
	var cut backend // the backend of a write that broke unanswered; pid 0: none
	for n := 0; ; n++ {
		var err error
		stage.Blocking(ctx, func() {
			if cut.pid != 0 {
				if err = s.fence(ctx, cut); err != nil {
					return
				}
				cut = backend{}
			}
			err = write(&cut)
		})
		if err == nil {
			// The table may change type once this write has committed,
			// before the rows' next write (another half of a bisection).
			*checked = false
			stage.ReportAttempt(ctx, nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = s.scrub(err)
		if shapeSuspect(err) && (!*checked || transient(err) || s.lay.Load() != lay) {
			if s.reshaped(ctx, lay, false) {
				return errReshaped
			}
			*checked = true
		}
		if !transient(err) {
			return err
		}
		if s.retryMax > 0 && n >= s.retryMax {
			err = fmt.Errorf("%d rows not stored after %d retries: %w", rows, n, err)
			if cut.pid != 0 {
				// The batch fails and its client may send it again, and
				// newer updates after it: the last try's write must not
				// run after those, any more than a retried one may.
				var ferr error
				stage.Blocking(ctx, func() { ferr = s.fence(ctx, cut) })
				if ferr != nil && ctx.Err() == nil {
					s.log.Warn("could not end the backend of a failed batch's last write, which got no answer: "+
						"its rows may still be stored later, after newer ones",
						zap.String("stage", s.name), zap.Int("rows", rows), zap.Error(s.scrub(ferr)))
				}
			}
			return err
		}
		// Each failed try is news for the stage's health (down once they
		// go on for seconds); Handle's result comes only after the last.
		stage.ReportAttempt(ctx, fmt.Errorf("PostgreSQL write failed, retrying: %w", err))
		d := s.delay(n)
		s.log.Warn("PostgreSQL write failed; retrying the batch",
			zap.String("stage", s.name), zap.Int("rows", rows), zap.Int("retry", n+1),
			zap.Duration("backoff", d), zap.Error(err))
		var ok bool
		stage.Blocking(ctx, func() { ok = sleep(ctx, d) })
		if !ok {
			return ctx.Err()
		}
		// A column or the table missing may come back with other types
		// (DROP COLUMN, then ADD COLUMN of another type; the table made
		// again), which the rows are not encoded for, and some of those
		// COPY's binary format stores without an error (jsonb's version
		// byte before text). So each retry of such an outage looks first.
		if code := sqlState(err); code == "42703" || code == "42P01" {
			if s.reshaped(ctx, lay, false) {
				return errReshaped
			}
		}
	}
}

// insertRows runs one INSERT of rows [lo, hi) of r (method insert), or
// of args when given (the rows an upsert picked); an INSERT outside an
// explicit transaction is one transaction, committed when it returns.
// When the connection breaks unanswered, *cut is its backend (attempt).
func (s *Sink) insertRows(ctx context.Context, r *rows, lo, hi int, args []any, cut *backend) (err error) {
	ctx, timedOut := s.writeContext(ctx)
	defer func() { err = timedOut(err) }()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { s.release(conn, err, cut) }()
	if args == nil {
		args = make([]any, len(r.cols))
		for i, col := range r.cols {
			args[i] = col[lo:hi]
		}
	}
	_, err = conn.Exec(ctx, r.lay.insSQL, args...)
	return err
}

// release gives conn back to the pool after a write that ended with err.
// A write whose connection broke unanswered may still run on the server
// (attempt): *cut is set to its backend: its PID, and when its server
// started.
//
// pgx closes a broken connection in the background, and its pool slot is
// free only once that is done: after a cancel request it sends Terminate
// and reads the socket until the server closes it, for up to 15 s. After
// a write_timeout the server is not answering, so with max_conns: 1 the
// retry waited those 15 s for its connection; the socket is closed here
// at once instead, which ends that wait.
func (s *Sink) release(conn *pgxpool.Conn, err error, cut *backend) {
	if pc := conn.Conn().PgConn(); err != nil && pc.IsClosed() {
		// A write PostgreSQL answered with an error (a SQLSTATE: the
		// server shutting down, 57P01, or the backend ended) ran no
		// further: its backend read it all and is gone. Only one that
		// broke unanswered needs the fence.
		if sqlState(err) == "" {
			*cut = backend{pid: pc.PID()}
			if t, ok := pc.CustomData()[serverStartKey].(int64); ok {
				cut.serverStart = t
			}
		}
		_ = pc.Conn().Close()
	}
	conn.Release()
}

// copy writes parts, the COPY data, and returns once it has committed or
// failed: a COPY outside a transaction block is its own transaction; the
// idempotent path is one explicit transaction. When the connection breaks
// unanswered, *cut is its backend (attempt).
func (s *Sink) copy(ctx context.Context, lay *layout, parts [][]byte, idem bool, cut *backend) (err error) {
	ctx, timedOut := s.writeContext(ctx)
	defer func() { err = timedOut(err) }()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { s.release(conn, err, cut) }()
	pc := conn.Conn().PgConn()
	data := &copySource{parts: parts}
	defer data.close()
	if !idem && !s.update { // an upsert always goes through the load table
		_, err = pc.CopyFrom(ctx, data, lay.copySQL)
		return err
	}
	// The mode is read once: the retry below depends on how this write
	// went, not on what another worker has switched the mode to since.
	perTx := s.loadPerTx.Load()
	stale, err := s.loadCopy(ctx, lay, pc, data, perTx)
	if stale {
		// The connection's load table is not the one it made: missing
		// (42P01), as when the server session is not the connection's own
		// (a pooler in transaction mode) or someone dropped it, or there
		// before the connection made it (42P07: a pooler handed it a
		// session an earlier client left one in). From now on each write
		// makes its own, and this one is written so once.
		if s.loadPerTx.CompareAndSwap(false, true) {
			s.log.Warn("the load table made for a connection went missing or was another session's; making one in each write from now on",
				zap.String("stage", s.name), zap.Error(s.scrub(err)))
		}
		again := &copySource{parts: parts}
		defer again.close()
		_, err = s.loadCopy(ctx, lay, pc, again, true)
	}
	if err == nil {
		s.idemWrites.Add(1)
	}
	return err
}

// loadCopy writes data into the load table and from there into the table,
// in one transaction: the connection's own load table, or with perTx one
// made in the transaction. stale reports that it failed because the
// connection's load table was missing or, as it made it, already there;
// it is never set with perTx, whose transaction drops any table there
// and makes its own.
func (s *Sink) loadCopy(ctx context.Context, lay *layout, pc *pgconn.PgConn, data *copySource, perTx bool) (stale bool, err error) {
	begin := lay.tempTxSQL
	if !perTx {
		if err := s.loadTable(ctx, lay, pc); err != nil {
			return sqlState(err) == "42P07", err
		}
		begin = "BEGIN"
	}
	if testBeforeLoad != nil {
		testBeforeLoad(s)
	}
	if _, err := pc.Exec(ctx, begin).ReadAll(); err != nil {
		return false, s.rollback(ctx, pc, err)
	}
	if _, err := pc.CopyFrom(ctx, data, lay.copyTempSQL); err != nil {
		return !perTx && sqlState(err) == "42P01", s.rollback(ctx, pc, err)
	}
	if _, err := pc.Exec(ctx, lay.mergeSQL).ReadAll(); err != nil {
		return false, s.rollback(ctx, pc, err)
	}
	return false, nil
}

// testBeforeLoad, set by tests, runs in each write through the load table
// once it knows which load table it writes to.
var testBeforeLoad func(*Sink)

// loadTable begins the name of the temporary table the idempotent path
// and upserts COPY into: one per connection, emptied at each commit. The
// rest of its name is a digest of its shape (loadTableName).
const loadTable = "_seda_load"

// loadTableName returns the name of the load table of shape (its columns
// and the table they come from): loadTable, then the first 12 hex digits
// of the shape's SHA-256.
func loadTableName(shape string) string {
	sum := sha256.Sum256([]byte(shape))
	return loadTable + "_" + hex.EncodeToString(sum[:6])
}

// loadTable makes the connection's load table unless it has it (noted in
// the connection's CustomData, which lives and dies with the connection).
func (s *Sink) loadTable(ctx context.Context, lay *layout, pc *pgconn.PgConn) error {
	data := pc.CustomData()
	if data[lay.loadName] != nil {
		return nil
	}
	if _, err := pc.Exec(ctx, lay.tempSQL).ReadAll(); err != nil {
		return err
	}
	data[lay.loadName] = true
	return nil
}

// rollback ends the failed transaction so the connection can be reused; if
// it cannot, the pool drops the connection on Release.
func (s *Sink) rollback(ctx context.Context, pc *pgconn.PgConn, err error) error {
	if !pc.IsClosed() && pc.TxStatus() != 'I' {
		_, _ = pc.Exec(ctx, "ROLLBACK").ReadAll()
	}
	return err
}

// delay is the wait before retry n (from 0): backoff doubled n times, at
// most max_backoff, with jitter (between half of that and all of it) so
// that workers retrying together spread out.
func (s *Sink) delay(n int) time.Duration {
	d := s.backoff
	for range min(n, 62) {
		if d >= s.maxBackoff/2 {
			d = s.maxBackoff
			break
		}
		d *= 2
	}
	d = min(d, s.maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// refusal is the reason ev is nacked with when PostgreSQL refused its row
// with err: PostgreSQL's message and SQLSTATE, after the column it names,
// as the sink's own refusals name it (column "f4" (field f4): ...), so
// that a table with several columns of a type shows which one.
func (s *Sink) refusal(ev *stage.Event, err error) error {
	return s.refusalAt(ev, s.refusedColumn(err), err)
}

// refusalAt is refusal with the column name refused ("": none named).
func (s *Sink) refusalAt(ev *stage.Event, name string, err error) error {
	if name != "" {
		at := fmt.Sprintf("column %q", name)
		for _, c := range s.cols {
			if c.name == name {
				at += " (field " + c.path + ")"
				break
			}
		}
		err = fmt.Errorf("%s: %w", at, err)
	}
	return fmt.Errorf("stage %q: record %d refused: %w", s.name, ev.Seq, stage.WithClass(err, stage.ErrDatabase))
}

// copyContext matches the context COPY gives an error about one value:
// "COPY events, line 1, column f4: "1e-50"" (binary format: no value),
// group 1 being what follows the word for column. The words are
// translated under lc_messages, so only the shape is relied on; one that
// does not match names no column.
var copyContext = regexp.MustCompile(`^COPY .*?, \S+ \d+, \S+ (.*)$`)

// refusedColumn returns the column PostgreSQL names in err: its
// ColumnName (a NOT NULL violation sets it), or the column of COPY's
// context (a value of the wrong syntax or out of range, found as COPY
// reads it) when that is one of the sink's columns; "" when it names
// none, as for a value the insert method's casts refuse (castColumns
// looks for that one). The value COPY
// quotes in its context is not taken: it may be a secret.
func (s *Sink) refusedColumn(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return ""
	}
	if pe.ColumnName != "" {
		return pe.ColumnName
	}
	for line := range strings.SplitSeq(pe.Where, "\n") {
		m := copyContext.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		// PostgreSQL writes the name as it is, unquoted, and a name may
		// hold spaces or colons: the longest of the sink's columns that
		// the rest starts with, followed by nothing, a colon or a space
		// (French puts one before the colon).
		name := ""
		for _, c := range s.cols {
			rest, ok := strings.CutPrefix(m[1], c.name)
			if ok && len(c.name) > len(name) && (rest == "" || rest[0] == ':' || rest[0] == ' ') {
				name = c.name
			}
		}
		if name != "" {
			return name
		}
	}
	return ""
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// rowError reports whether err is PostgreSQL refusing some row: a data
// exception (class 22), an integrity constraint violation (class 23), a
// row outside the view it is written through (class 44, a WITH CHECK
// OPTION violation: method insert writes into a view PostgreSQL can
// update, and the view's condition is checked on each new row), a
// row too large for an index (54000), a value nested too deeply to parse
// (54001: "stack depth limit exceeded", a JSON document of thousands of
// levels), an error in a PL/pgSQL trigger (class P0: RAISE EXCEPTION's
// P0001, SELECT INTO STRICT finding no row or several, P0002 and P0003,
// a failed ASSERT, P0004), a code of a class PostgreSQL does not define
// (one a trigger raised of its own, RAISE ... USING ERRCODE = 'U0001'), a
// row a row-level security policy refuses (42501 with PostgreSQL's
// message for it: "new row violates row-level security policy"; the
// other 42501s are permissions, which no row is to blame for: transient
// retries them), or, under conflict: update, two rows a statement would write to one row (21000:
// keys PostgreSQL finds equal that were written differently). The batch
// is bisected to find it.
func rowError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	code, class := pe.Code, pe.Code[:2]
	switch {
	case class == "22" || class == "23" || class == "44" || class == "P0" || !strings.Contains(pgClasses, class):
		return true
	case code == "54000" || code == "54001" || code == "21000":
		return true
	}
	// PostgreSQL's message is translated under lc_messages; the routine
	// that raises it is not. Taken for an outage, a row-level security
	// refusal on a server speaking German held its batch for ever.
	return code == "42501" && (pe.Routine == "ExecWithCheckOptions" || strings.Contains(pe.Message, "violates row-level security policy"))
}

// pgClasses lists the classes of SQLSTATE that PostgreSQL defines (the
// first two characters; PostgreSQL 15's errcodes appendix). A code of any
// other class is one a function raised of its own: PostgreSQL raises
// none, so it is the row's trigger refusing the row.
const pgClasses = "00 01 02 03 08 09 0A 0B 0F 0L 0P 0Z 20 21 22 23 24 25 26 27 28 2B 2D 2F " +
	"34 38 39 3B 3D 3F 40 42 44 53 54 55 57 58 72 F0 HV P0 XX"

// transient reports whether a write that failed with err may succeed if
// retried: a failure no record is to blame for, that passes by itself or
// that the server's operator clears. Failing the batch instead would fail
// records that are not at fault, and behind a NATS queue dead-letter every
// one of them once their redeliveries are used up, with nothing to replay
// them; retried, they wait (the stage shows down, retry.max bounds the
// wait when set) and are stored once the database is back.
//
// These are: the connection failed (no SQLSTATE, or class 08); the server
// is shutting down or starting (57P01, 57P02, 57P03); the transaction lost
// a race (40001, 40P01, 55P03); the statement timed out (57014); the
// server is read-only (25006: a standby after a failover or a demotion,
// or default_transaction_read_only set); it lacks resources (class 53: out
// of disk, 53100, of memory, 53200, of connections, 53300, or past a
// configured limit, 53400); it had a system or I/O error (class 58); it
// failed internally or found its data or an index corrupted (class XX:
// XX000, and XX001 and XX002, which a REINDEX or a repair clears, and which
// no row of the batch is to blame for any more than for XX000); the role
// may not write the table (42501, other than a row-level security
// policy's refusal of a row: rowError) until a GRANT; the table is
// missing (42P01: dropped or renamed, until it is made again; the load
// table going missing is met in copy, which writes again with one made in
// the transaction, so a 42P01 of the sink's statement that gets here is
// the table's); or a column the stage writes is missing (42703: dropped,
// until it is added again). A 42P01 or 42703 of the sink's own statement
// is never one row's fault: the statements name only the table and the
// configured columns, of the table and of the load table made from it,
// and under version the stored row's version column, so every row of
// every batch meets it alike, and failing the batch would fail them all.
// Start checked those were there, and fails at once on one missing
// (retryable), so a 42P01 or 42703 here is one that went away since.
//
// One raised inside a trigger or another function the write ran (a
// partition's child that cron makes late, routed to by a trigger's
// EXECUTE format('INSERT INTO %I ...', 'events_' || NEW.month); a
// postgres_fdw foreign table whose remote table was renamed) is retried
// alike, even where it is one row's (a trigger routing each row to a
// table its content names, one naming a table that does not exist): the
// error cannot tell the two apart, and each guess lost rows. Taken for
// the row's, every row of a late partition was refused within a second
// while the stage read ok; judged by whether other rows stored, a
// straggler of the month before made the new month's rows refused, and a
// lone record per worker stalled the stage all the same. A missing table
// or column is the schema's, not the record's: the stage shows down,
// naming it, and its records wait until it exists, or retry.max (when
// set) fails them.
func transient(err error) bool {
	code := sqlState(err)
	switch {
	case code == "":
		// Not an answer from the server: the connection was refused, reset
		// or lost, or the pool could not make one. Context errors never
		// get here: the callers return them first.
		return true
	case len(code) != 5:
		return false
	}
	switch code[:2] {
	case "08", "53", "58", "XX":
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014", "25006":
		return true
	case "42703", "42P01":
		return true
	case "42501":
		return !rowError(err)
	}
	return false
}
